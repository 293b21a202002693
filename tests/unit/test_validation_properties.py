"""Property tests of request validation: valid requests always pass and round-trip; anything
with an illegal identifier, or any junk at all, fails with InvalidInput naming a field."""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from mdstudio_core.domain.errors import InvalidInput
from mdstudio_core.service_layer.approvals import validate_request
from tests.support.factories import metadata_request

segment = st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True)
canonical_keys = st.lists(segment, min_size=1, max_size=4).map(".".join)
identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True)
column_rules = st.fixed_dictionaries(
    {"name": identifiers},
    optional={
        "nullable": st.booleans(),
        "unique": st.booleans(),
        "pattern": st.sampled_from([r"^[A-Z]{2}$", r"@", r"^\d+$"]),
        # NUL and lone surrogates are refused (PostgreSQL cannot store them, and a surrogate is
        # no UTF-8); every other character is a valid value.
        "allowed_values": st.lists(
            st.text(
                st.characters(exclude_characters="\x00", exclude_categories=("Cs",)),
                min_size=1,
                max_size=5,
            ),
            min_size=1,
            max_size=4,
        ),
        "min": st.integers(-100, 0),
        "max": st.integers(1, 100),
    },
)
bindings = st.fixed_dictionaries(
    {
        "table": identifiers,
        "columns": st.lists(
            column_rules, min_size=1, max_size=5, unique_by=lambda c: c["name"].lower()
        ),
    },
    optional={"source": identifiers, "schema": identifiers},
)


@given(
    key=canonical_keys,
    tier=st.sampled_from(["tier1", "tier2", "tier3"]),
    binding=st.one_of(st.none(), bindings),
)
def test_valid_requests_are_accepted_and_round_trip(key, tier, binding):
    request = metadata_request(key=key, tier=tier, lane="draft", binding=binding)
    parsed, state = validate_request(request)
    assert parsed.entity_key == key
    assert state["canonical_key"] == key
    assert state["tier"] == tier
    if binding is None:
        assert state["binding"] is None
    else:
        assert [c["name"] for c in state["binding"]["columns"]] == [
            c["name"] for c in binding["columns"]
        ]
        # Normalising twice changes nothing.
        again = metadata_request(key=key, tier=tier, lane="draft", binding=state["binding"])
        assert validate_request(again)[1] == state


ILLEGAL = set(string.punctuation + string.whitespace) - {"_"}


@given(
    prefix=identifiers,
    bad=st.sampled_from(sorted(ILLEGAL)),
    where=st.sampled_from(["table", "schema", "source", "column"]),
)
def test_identifiers_with_illegal_characters_are_refused(prefix, bad, where):
    name = prefix + bad + "x"
    request = metadata_request()
    binding = request["payload"]["binding"]
    if where == "column":
        binding["columns"][0]["name"] = name
        field = "payload.binding.columns[0].name"
    else:
        binding[where] = name
        field = f"payload.binding.{where}"
    try:
        validate_request(request)
    except InvalidInput as exc:
        assert exc.field == field
    else:
        raise AssertionError(f"{name!r} accepted as {where}")


@given(
    key=st.text(min_size=1, max_size=30).filter(
        lambda k: any(c in k for c in " ;'\"`()*/\\\n\t$%") or k[0].isdigit()
    )
)
def test_canonical_keys_with_illegal_characters_are_refused(key):
    try:
        validate_request(metadata_request(key=key))
    except InvalidInput as exc:
        assert exc.field in {"payload.canonical_key", "entity_key"}
    else:
        raise AssertionError(f"{key!r} accepted")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300)
@given(
    junk=st.one_of(
        json_values,
        st.dictionaries(
            st.sampled_from(["entity_type", "entity_key", "tier", "lane", "payload", "other"]),
            json_values,
        ),
    )
)
def test_any_junk_is_invalid_input_never_a_crash(junk):
    try:
        validate_request(junk)
    except InvalidInput as exc:
        assert exc.field
