"""Change sets from files: `mdstudio approvals submit --file changes.jsonl|changes.csv`. Item n
is line n of a JSON Lines file and row n after the header of a CSV file; any bad item fails the
whole file (exit 2) naming every bad item, and nothing is stored."""

from __future__ import annotations

import json

import pytest

from mdstudio_core.domain.change_sets import Unreadable, parse_csv, parse_jsonl
from mdstudio_core.domain.errors import InvalidInput
from tests.support.cli_helpers import run_cli
from tests.support.factories import (
    changed,
    glossary_request,
    kpi_request,
    metadata_request,
    store_snapshot,
)

GLOSSARY_CSV = (
    "entity_type,tier,lane,payload.term,payload.definition,payload.synonyms,payload.owner\n"
    'GLOSSARY,tier3,governed,Gross Revenue,"Revenue before discounts, returns and tax.",'
    '"[""Gross Sales""]",finance-data\n'
    "GLOSSARY,tier3,governed,Net Revenue,Revenue after discounts.,,\n"
)


# -- parsing -----------------------------------------------------------------------------------


def test_jsonl_item_n_is_line_n():
    text = "\n".join(
        [json.dumps(glossary_request("A")), "{not json", "", json.dumps(glossary_request("B"))]
    )
    first, second, third, fourth = parse_jsonl("\ufeff" + text + "\n\n\n")
    assert first["payload"]["term"] == "A" and fourth["payload"]["term"] == "B"
    assert isinstance(second, Unreadable) and second.reason.startswith("malformed JSON")
    assert third == Unreadable("a blank line (one request per line)")


def test_csv_rows_become_requests():
    first, second = parse_csv(GLOSSARY_CSV)
    assert first == {
        "entity_type": "GLOSSARY",
        "tier": "tier3",
        "lane": "governed",
        "payload": {
            "term": "Gross Revenue",
            "definition": "Revenue before discounts, returns and tax.",
            "synonyms": ["Gross Sales"],
            "owner": "finance-data",
        },
    }
    assert second["payload"] == {"term": "Net Revenue", "definition": "Revenue after discounts."}


def test_csv_json_cells_blank_rows_and_bad_rows():
    text = (
        "entity_type,entity_key,tier,lane,payload.canonical_key,payload.binding\n"
        "\n"
        "GLOBAL_METADATA,k.a,tier2,governed,k.a,"
        '"{""table"": ""t"", ""columns"": [{""name"": ""c""}]}"\n'
        'GLOBAL_METADATA,k.b,tier2,governed,k.b,"{broken"\n'
        "a,b,c,d,e,f,g\n"
    )
    good, broken, wide = parse_csv(text)
    assert good["entity_key"] == "k.a" and good["payload"]["binding"]["table"] == "t"
    assert broken == Unreadable(broken.reason) and broken.reason.startswith(
        "payload.binding: malformed JSON"
    )
    assert wide == Unreadable("has 7 cells; the header names 6 columns")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("entity_type,tierr\n", "unknown column 'tierr'"),
        ("entity_type,payload.\n", "unknown column 'payload.'"),
        ("tier,tier\n", "named twice"),
    ],
)
def test_a_bad_csv_header_refuses_the_file(text, message):
    with pytest.raises(InvalidInput, match=message) as refused:
        parse_csv(text)
    assert refused.value.field == "file"


# -- the CLI, both backends --------------------------------------------------------------------


def cli(*args: str, user: str = "alice", role: str | None = None):
    return run_cli([*args, "--user", user, *(["--role", role] if role else [])])


def test_a_jsonl_change_set_is_one_row_decided_once(cli_env, tmp_path):
    path = tmp_path / "changes.jsonl"
    requests = [metadata_request(), glossary_request(), kpi_request()]
    path.write_text("".join(json.dumps(r) + "\n" for r in requests))
    submitted = cli("approvals", "submit", "--file", str(path), "--json")
    assert submitted.exit_code == 0, submitted.stderr
    record = submitted.json
    assert (record["title"], record["entity_type"], record["required_role"]) == (
        "changes.jsonl",
        "CHANGE_SET",
        "kernel_owner",
    )
    assert [item["item"] for item in record["items"]] == [1, 2, 3]
    listed = cli("approvals", "list", "--status", "pending", "--json").json
    assert [row["id"] for row in listed] == [record["id"]]
    table = cli("approvals", "list").stdout
    assert "CHANGE_SET" in table and "changes.jsonl" in table
    human = cli("approvals", "show", record["id"], user="bob")
    assert human.exit_code == 0, human.stderr
    assert "item 1: GLOBAL_METADATA finance.revenue.gross_amount" in human.stdout
    assert "    label: added 'Gross amount'" in human.stdout
    assert "item 3: KPI finance.kpi.gross_margin (tier2, governed" in human.stdout
    shown = cli("approvals", "show", record["id"], "--json", user="bob").json
    assert shown["items"][1]["changes"][0]["change"] == "added"
    steward = cli("approvals", "approve", record["id"], user="sam", role="metadata_steward")
    assert steward.exit_code == 3 and "kernel_owner" in steward.stderr
    own = cli("approvals", "approve", record["id"], role="kernel_owner")
    assert own.exit_code == 3 and "four-eyes" in own.stderr
    approved = cli("approvals", "approve", record["id"], "--json", user="bob", role="kernel_owner")
    assert approved.exit_code == 0, approved.stderr
    assert approved.json["status"] == "approved"
    metadata = cli("metadata", "list", "--json").json
    assert [m["canonical_key"] for m in metadata] == ["finance.revenue.gross_amount"]
    events = cli("events", "list", "--json").json
    assert [e["type"] for e in events].count("approval.approved") == 3


def test_a_csv_change_set_with_a_title(cli_env, tmp_path):
    path = tmp_path / "terms.csv"
    path.write_text(GLOSSARY_CSV)
    submitted = cli(
        "approvals", "submit", "--file", str(path), "--title", "Glossary import", "--json"
    )
    assert submitted.exit_code == 0, submitted.stderr
    assert submitted.json["title"] == "Glossary import"
    assert [i["entity_key"] for i in submitted.json["items"]] == ["Gross Revenue", "Net Revenue"]
    rejected = cli(
        "approvals", "reject", submitted.json["id"], "--reason", "later", user="bob",
        role="metadata_steward",
    )  # fmt: skip
    assert rejected.exit_code == 0, rejected.stderr
    cancelled = cli("approvals", "cancel", submitted.json["id"])
    assert cancelled.exit_code == 5 and "already rejected" in cancelled.stderr


def test_every_bad_line_is_named_and_nothing_is_stored(cli_env, tmp_path, store_url):
    from sqlalchemy import create_engine

    engine = create_engine(store_url)
    before = store_snapshot(engine)
    path = tmp_path / "changes.jsonl"
    lines = [
        json.dumps(glossary_request("A")),
        json.dumps(changed(metadata_request("sales.x.y", tier="tier2"), tier="tier9")),
        "{oops",
        json.dumps(glossary_request("B")),
    ]
    path.write_text("\n".join(lines) + "\n")
    result = cli("approvals", "submit", "--file", str(path))
    assert result.exit_code == 2
    assert "item 2: payload.tier: " in result.stderr
    assert "item 3: request: malformed JSON" in result.stderr
    assert "item 1" not in result.stderr and "item 4" not in result.stderr
    csv_path = tmp_path / "bad.csv"
    csv_path.write_text("entity_type,tier,lane,payload.term\nGLOSSARY,tier3,governed,\n")
    bad_csv = cli("approvals", "submit", "--file", str(csv_path))
    assert bad_csv.exit_code == 2
    assert "item 1: payload.term: Field required; payload.definition: Field required" in (
        bad_csv.stderr
    )
    titled_single = tmp_path / "one.json"
    titled_single.write_text(json.dumps(glossary_request()))
    refused = cli("approvals", "submit", "--file", str(titled_single), "--title", "x")
    assert refused.exit_code == 2 and "title" in refused.stderr
    assert store_snapshot(engine) == before
    engine.dispose()


def test_a_row_that_is_not_csv_is_an_unreadable_item():
    [good, bad] = parse_csv('entity_type,tier\nGLOSSARY,tier3\n"a"b,c\n')
    assert good == {"entity_type": "GLOSSARY", "tier": "tier3", "payload": {}}
    assert isinstance(bad, Unreadable) and bad.reason.startswith("not CSV")
