"""The reviewer's diff: fields added, removed and changed; binding columns and their rules
matched by name; a new entity all added; bookkeeping fields never shown."""

from __future__ import annotations

from mdstudio_core.domain.diff import Change, DiffRow, diff_entity

LIVE = {
    "id": "x",
    "version": 3,
    "updated_at": "2026-01-01T00:00:00+00:00",
    "updated_by": "bob",
    "label": "Amount",
    "owner": "finance",
    "description": "old",
    "binding": {
        "source": "wh",
        "table": "orders",
        "columns": [
            {"name": "amount", "nullable": False, "min": 0},
            {"name": "currency", "allowed_values": ["EUR"]},
        ],
    },
}


def test_a_new_entity_is_all_added_with_its_columns():
    proposed = {k: v for k, v in LIVE.items() if k not in ("id", "version", "updated_at")}
    diff = diff_entity(None, proposed)
    assert {row.change for row in diff.rows} == {Change.ADDED}
    assert [row.field for row in diff.rows] == [
        "label",
        "owner",
        "description",
        "binding.source",
        "binding.table",
        "binding.columns[amount]",
        "binding.columns[currency]",
    ]
    assert diff.rows[5].new == {"nullable": False, "min": 0}
    assert "updated_by" not in [row.field for row in diff.rows]


def test_changes_are_field_by_field_and_column_by_column():
    proposed = {
        "label": "Amount (EUR)",
        "owner": "finance",
        "binding": {
            "source": "wh",
            "schema": "sales",
            "table": "orders",
            "columns": [
                {"name": "amount", "nullable": True, "min": 0},
                {"name": "country", "pattern": "^[A-Z]{2}$"},
            ],
        },
    }
    diff = diff_entity(LIVE, proposed)
    assert diff.rows == [
        DiffRow("label", Change.CHANGED, "Amount", "Amount (EUR)"),
        DiffRow("binding.schema", Change.ADDED, new="sales"),
        DiffRow("binding.columns[amount].nullable", Change.CHANGED, False, True),
        DiffRow("binding.columns[country]", Change.ADDED, new={"pattern": "^[A-Z]{2}$"}),
        DiffRow("binding.columns[currency]", Change.REMOVED, old={"allowed_values": ["EUR"]}),
        DiffRow("description", Change.REMOVED, old="old"),
    ]
    assert diff.unchanged == ["owner"]


def test_a_rule_removed_from_a_kept_column_and_an_identical_proposal():
    proposed = {**LIVE, "binding": {**LIVE["binding"], "columns": [{"name": "amount"}]}}
    rows = diff_entity(LIVE, proposed).rows
    assert [(r.field, r.change) for r in rows] == [
        ("binding.columns[amount].nullable", Change.REMOVED),
        ("binding.columns[amount].min", Change.REMOVED),
        ("binding.columns[currency]", Change.REMOVED),
    ]
    same = diff_entity(LIVE, dict(LIVE))
    assert same.rows == [] and set(same.unchanged) == {"label", "owner", "description", "binding"}


def test_a_field_left_empty_on_either_side_reads_as_unchanged():
    """A field None in the live state and missing from the proposal (or the other way round)
    has not changed: it is listed as unchanged, in the proposal's order, not dropped."""
    diff = diff_entity({"label": "Amount", "description": None}, {"label": "Amount", "owner": None})
    assert diff.rows == []
    assert diff.unchanged == ["label", "owner", "description"]
