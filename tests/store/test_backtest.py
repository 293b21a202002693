"""The backtest of a rule change (issue 23, part 4): a daily table with known bad days, scored
under the live and the proposed rules, through the CLI, the HTTP API and the console, on both
store backends and both warehouse dialects.

The table `readings` holds ten rows a day, amounts in `amount`. The live rule is `min: 0`; the
proposed one adds `max: 100`. A day with `k` invalid amounts of ten scores
100 x (0.4 + 0.3 x (10 - k) / 10) / 0.7 (completeness and validity, README's formula):

    k = 0: 100    k = 4: 82.86    k = 5: 78.57    k = 10: 57.14

    day         negative  above 100   live    proposed
    2026-09-22        10          0   57.14      57.14   (outside the default window)
    2026-11-01         0          0  100        100
    2026-11-02         0          5  100         78.57
    2026-11-03         0          5  100         78.57
    2026-11-04         0          0  100        100
    2026-11-05         5          0   78.57      78.57
    2026-11-06         0          4  100         82.86
    2026-11-07         0          5  100         78.57
    2026-11-08                                            (no rows)
    2026-11-09         0          0  100        100

With the tier1 minimum 80, open-after 1 and a recovery margin of 2 (82 to recover): live fails
one day and opens one incident; proposed fails four days and opens three (11-02, resolved
11-04; 11-05, resolved 11-06 at 82.86; 11-07, resolved 11-09).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from mdstudio_core.adapters import backtest_sql
from mdstudio_core.adapters.warehouse import create_engine
from mdstudio_core.config import Settings
from mdstudio_core.domain.backtest import BacktestDay, backtest
from mdstudio_core.domain.errors import ConfigurationError
from mdstudio_core.domain.incidents import IncidentPolicy
from mdstudio_core.domain.model import ColumnRule, Incremental, Tier
from mdstudio_core.domain.quality import QualityThresholds
from mdstudio_core.entrypoints.http import create_app
from mdstudio_core.service_layer import approvals, change_sets, tokens
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.console.conftest import Browser
from tests.support.cli_helpers import run_cli
from tests.support.factories import approve_metadata, metadata_request, person

KEY = "sensors.readings.amount"
OTHER = "sensors.readings.amount_copy"
DECIDER = ("--user", "carol", "--role", "kernel_owner")
LIVE_COLUMNS = [{"name": "amount", "min": 0}]
PROPOSED_COLUMNS = [{"name": "amount", "min": 0, "max": 100}]
DAILY = {"column": "loaded_at", "partition": "day"}
# day -> (negative amounts, amounts above 100), of ten rows
BAD = {
    dt.date(2026, 9, 22): (10, 0),
    dt.date(2026, 11, 1): (0, 0),
    dt.date(2026, 11, 2): (0, 5),
    dt.date(2026, 11, 3): (0, 5),
    dt.date(2026, 11, 4): (0, 0),
    dt.date(2026, 11, 5): (5, 0),
    dt.date(2026, 11, 6): (0, 4),
    dt.date(2026, 11, 7): (0, 5),
    dt.date(2026, 11, 9): (0, 0),
}
EXPECTED_DAYS = [
    {"day": "2026-11-01", "live_score": 100.0, "proposed_score": 100.0},
    {"day": "2026-11-02", "live_score": 100.0, "proposed_score": 78.57},
    {"day": "2026-11-03", "live_score": 100.0, "proposed_score": 78.57},
    {"day": "2026-11-04", "live_score": 100.0, "proposed_score": 100.0},
    {"day": "2026-11-05", "live_score": 78.57, "proposed_score": 78.57},
    {"day": "2026-11-06", "live_score": 100.0, "proposed_score": 82.86},
    {"day": "2026-11-07", "live_score": 100.0, "proposed_score": 78.57},
    {"day": "2026-11-09", "live_score": 100.0, "proposed_score": 100.0},
]


def binding(columns: list[dict[str, Any]], incremental: dict[str, Any] | None = DAILY) -> dict:
    found: dict[str, Any] = {"source": "wh", "table": "readings", "columns": columns}
    if incremental:
        found["incremental"] = incremental
    return found


def create_readings(url: str) -> None:
    """Ten rows a day, `BAD[day]` of them negative and above 100; ids and codes per row."""
    rows = []
    for day, (negative, big) in BAD.items():
        for i in range(10):
            amount = -1 if i < negative else 500 if i < negative + big else 10 + i
            rows.append(
                {
                    "id": len(rows) + 1,
                    "loaded_at": dt.datetime.combine(day, dt.time(8 + i)),
                    "amount": amount,
                    "code": f"c{i % 3}",
                }
            )
    engine = sa.create_engine(url)
    table = sa.Table(
        "readings",
        sa.MetaData(),
        sa.Column("id", sa.Integer),
        sa.Column("loaded_at", sa.DateTime),
        sa.Column("amount", sa.Integer),
        sa.Column("code", sa.Text),
    )
    with engine.begin() as connection:
        table.create(connection)
        connection.execute(table.insert(), rows)
    engine.dispose()


@pytest.fixture
def readings(warehouse_url: str) -> str:
    create_readings(warehouse_url)
    return warehouse_url


@pytest.fixture
def cli_env(store_url, readings, monkeypatch, tenant):
    monkeypatch.setenv("MDSTUDIO_DATABASE_URL", store_url)
    monkeypatch.setenv("MDSTUDIO_TENANT", str(tenant))
    monkeypatch.setenv("MDSTUDIO_SOURCE_WH_URL", readings)
    return store_url


def stricter_rule_pending(engine, tenant, incremental=DAILY) -> uuid.UUID:
    """The field live under the live rule, and a pending request for the stricter one."""
    approve_metadata(engine, tenant, key=KEY, binding=binding(LIVE_COLUMNS, incremental))
    return approvals.submit(
        UnitOfWork(engine),
        person(tenant, "alice"),
        metadata_request(key=KEY, binding=binding(PROPOSED_COLUMNS, incremental)),
        Settings(),
    ).id


def preview(approval_id, *extra: str):
    return run_cli(
        ["profiles", "preview", "--approval", str(approval_id), "--backtest", *DECIDER, *extra]
    )


# -- the domain: the counts, and the incident settings ------------------------------------------


def _judged(policy: IncidentPolicy, minimum: float = 80.0):
    days = [
        BacktestDay(dt.date.fromisoformat(d["day"]), d["live_score"], d["proposed_score"])
        for d in EXPECTED_DAYS
    ]
    return backtest(
        days,
        tier=Tier.TIER1,
        thresholds=QualityThresholds(tier1_min_score=minimum),
        policy=policy,
        window_days=30,
        tenant_id=uuid.uuid4(),
        canonical_key=KEY,
    )


def test_the_incident_settings_decide_how_many_incidents_open():
    default = _judged(IncidentPolicy())
    assert default.failing_days == {"live": 1, "proposed": 4}
    assert default.incidents == {"live": 1, "proposed": 3}
    # Two failing days in a row: only 11-02 and 11-03 are.
    assert _judged(IncidentPolicy(open_after=2)).incidents == {"live": 0, "proposed": 1}
    # A margin of 5 (85 to recover): 82.86 on 11-06 does not close the 11-05 incident, so
    # 11-07 opens none.
    assert _judged(IncidentPolicy(recovery_margin=5)).incidents == {"live": 1, "proposed": 2}
    # A minimum of 90: 11-06 fails too, and the 11-05 incident stays open through 11-07.
    stricter = _judged(IncidentPolicy(), minimum=90)
    assert stricter.failing_days == {"live": 1, "proposed": 5}
    assert stricter.incidents == {"live": 1, "proposed": 2}


def test_tier3_has_no_minimum_and_fails_no_day():
    judged = backtest(
        [BacktestDay(dt.date(2026, 1, 1), 10.0, None)],
        tier=Tier.TIER3,
        thresholds=QualityThresholds(),
        policy=IncidentPolicy(),
        window_days=30,
        tenant_id=uuid.uuid4(),
        canonical_key=KEY,
    )
    assert judged.failing_days == {"live": 0, "proposed": 0}
    assert judged.incidents == {"live": 0, "proposed": 0}
    assert judged.minimum is None


def test_the_window_setting_is_read_once_and_named_when_wrong():
    assert Settings.from_env({}).backtest_days == 30
    assert Settings.from_env({"MDSTUDIO_BACKTEST_DAYS": "7"}).backtest_days == 7
    for wrong in ("0", "seven"):
        with pytest.raises(ConfigurationError, match="MDSTUDIO_BACKTEST_DAYS"):
            Settings.from_env({"MDSTUDIO_BACKTEST_DAYS": wrong})


# -- the warehouse read ---------------------------------------------------------------------------


def test_one_grouped_read_counts_each_day_under_both_rule_sets(readings):
    engine = create_engine(readings)
    live, proposed = ColumnRule(**LIVE_COLUMNS[0]), ColumnRule(**PROPOSED_COLUMNS[0])
    unique = ColumnRule(name="code", unique=True, pattern="^c[01]$")
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    window = backtest_sql.read_days(
        engine, "readings", [live, proposed, unique], Incremental(**DAILY), days=30
    )
    grouped = [s for s in statements if "GROUP BY" in s.upper()]
    assert len(grouped) == 1
    assert window.last_day == dt.date(2026, 11, 9)
    assert [d.day for d in window.days] == [dt.date.fromisoformat(d["day"]) for d in EXPECTED_DAYS]
    assert all(d.row_count == 10 for d in window.days)
    by_day = {d.day: d for d in window.days}
    keys = [rule.key for rule in window.rules]
    bad = by_day[dt.date(2026, 11, 5)].columns
    assert (bad[keys[0]].non_null, bad[keys[0]].valid) == (10, 5)
    assert bad[keys[1]].valid == 5
    worse = by_day[dt.date(2026, 11, 6)].columns
    assert (worse[keys[0]].valid, worse[keys[1]].valid) == (10, 6)
    codes = worse[keys[2]]
    assert (codes.distinct, codes.valid) == (3, 7)  # c0, c1, c2 over ten rows; c2 thrice
    assert keys[1] and keys[0] != keys[1]
    short = backtest_sql.read_days(engine, "readings", [live], Incremental(**DAILY), days=3)
    assert [d.day for d in short.days] == [dt.date(2026, 11, 7), dt.date(2026, 11, 9)]
    engine.dispose()


# -- the CLI --------------------------------------------------------------------------------------


def test_cli_backtest_of_a_stricter_rule_counts_the_known_bad_days(cli_env, engine, tenant):
    approval_id = stricter_rule_pending(engine, tenant)
    result = preview(approval_id, "--json")
    assert result.exit_code == 0, result.stderr
    evidence = result.json
    assert evidence["approval_id"] == str(approval_id)
    assert evidence["check"]["passed"] is True  # the whole table today
    found = evidence["backtest"]
    assert found["days"] == EXPECTED_DAYS
    assert found["failing_days"] == {"live": 1, "proposed": 4}
    assert found["incidents"] == {"live": 1, "proposed": 3}
    assert found["needs"] is None
    assert found["partition"] == "loaded_at"
    assert found["minimum"] == 80.0 and found["tier"] == "tier1" and found["window_days"] == 30
    assert found["incident_settings"] == {"open_after": 1, "recovery_margin": 2.0}

    human = preview(approval_id)
    assert human.exit_code == 0, human.stderr
    assert "2026-11-06  100.0       82.86" in human.stdout
    assert "failing days (the tier1 minimum 80): live 1, proposed 4" in human.stdout
    assert "incidents opened (open after 1, recovery margin 2): live 1, proposed 3" in human.stdout


def test_cli_backtest_follows_the_settings(cli_env, engine, tenant, monkeypatch):
    approval_id = stricter_rule_pending(engine, tenant)
    monkeypatch.setenv("MDSTUDIO_BACKTEST_DAYS", "3")
    monkeypatch.setenv("MDSTUDIO_INCIDENT_OPEN_AFTER", "2")
    found = preview(approval_id, "--json").json["backtest"]
    assert found["days"] == EXPECTED_DAYS[-2:]  # 11-07 and 11-09: 11-08 had no rows
    assert found["failing_days"] == {"live": 0, "proposed": 1}
    assert found["incidents"] == {"live": 0, "proposed": 0}
    monkeypatch.setenv("MDSTUDIO_BACKTEST_DAYS", "0")
    refused = preview(approval_id, "--json")
    assert refused.exit_code == 1 and "MDSTUDIO_BACKTEST_DAYS" in refused.stderr


def test_without_a_day_partition_the_backtest_says_so_and_shows_today(cli_env, engine, tenant):
    approval_id = stricter_rule_pending(engine, tenant, incremental=None)
    result = preview(approval_id, "--json")
    assert result.exit_code == 0, result.stderr
    found = result.json["backtest"]
    assert "a day partition" in found["needs"]
    assert found["partition"] is None
    # The whole table (90 rows, 15 negative, 19 above 100), once, today.
    assert found["days"] == [
        {
            "day": dt.datetime.now(dt.UTC).date().isoformat(),
            "live_score": 92.86,
            "proposed_score": 83.81,
        }
    ]
    assert found["failing_days"] == {"live": 0, "proposed": 0}
    assert result.json["quality_score"] == 83.81  # the preview: the proposed rules
    assert "backtest needs a day partition" in preview(approval_id).stdout


def test_cli_exit_codes(cli_env, engine, uow, tenant):
    approval_id = stricter_rule_pending(engine, tenant)
    assert preview(approval_id, "--json").exit_code == 0
    key_only = run_cli(["profiles", "preview", KEY, "--backtest", *DECIDER])
    assert key_only.exit_code == 2 and "--approval" in key_only.stderr
    requester = run_cli(
        ["profiles", "preview", "--approval", str(approval_id), "--backtest", "--user", "dave"]
    )
    assert requester.exit_code == 3
    assert preview(uuid.uuid4()).exit_code == 4
    new_field = approvals.submit(
        uow,
        person(tenant, "alice"),
        metadata_request(key=OTHER, binding=binding(PROPOSED_COLUMNS)),
        Settings(),
    )
    nothing = preview(new_field.id)
    assert nothing.exit_code == 2 and "nothing to backtest" in nothing.stderr
    renamed = approvals.submit(
        uow,
        person(tenant, "alice"),
        metadata_request(
            key=KEY,
            binding=binding([{"name": "no_such_column", "min": 0}]),
        ),
        Settings(),
    )
    missing = preview(renamed.id)
    assert missing.exit_code == 2 and "no_such_column" in missing.stderr


def test_a_change_set_backtests_each_item_that_changes_rules(cli_env, engine, uow, tenant):
    approve_metadata(engine, tenant, key=KEY, binding=binding(LIVE_COLUMNS))
    approve_metadata(engine, tenant, key=OTHER, binding=binding(LIVE_COLUMNS))
    items = [
        metadata_request(key=OTHER, binding=binding(LIVE_COLUMNS), label="Renamed only"),
        metadata_request(key=KEY, binding=binding(PROPOSED_COLUMNS)),
    ]
    change_set = change_sets.submit(
        uow,
        person(tenant, "alice"),
        "Stricter amounts",
        items,
        Settings(),
    )
    result = preview(change_set.approval.id, "--json")
    assert result.exit_code == 0, result.stderr
    [item] = result.json["items"]
    assert item["item"] == 2 and item["entity_key"] == KEY
    assert item["backtest"]["failing_days"] == {"live": 1, "proposed": 4}
    assert item["backtest"]["incidents"] == {"live": 1, "proposed": 3}
    human = preview(change_set.approval.id)
    assert f"item 2: {KEY}" in human.stdout and "live 1, proposed 3" in human.stdout
    plain = run_cli(["profiles", "preview", "--approval", str(change_set.approval.id), *DECIDER])
    assert plain.exit_code == 2  # a change set has no binding of its own to preview


# -- the HTTP API ---------------------------------------------------------------------------------


def _client(engine, readings, **settings: Any) -> TestClient:
    return TestClient(create_app(Settings(sources={"WH": readings}, **settings), engine=engine))


def _bearer(engine, tenant, user: str, *roles: str) -> dict[str, str]:
    secret, _ = tokens.create_token(UnitOfWork(engine), person(tenant, user, *roles))
    return {"Authorization": f"Bearer {secret}"}


def test_http_preview_with_the_backtest(engine, readings, tenant):
    approval_id = stricter_rule_pending(engine, tenant)
    carol = _bearer(engine, tenant, "carol", "kernel_owner")
    with _client(engine, readings) as client:
        path = f"/approvals/{approval_id}/preview"
        found = client.get(path, params={"backtest": "true"}, headers=carol)
        assert found.status_code == 200, found.text
        assert found.json()["backtest"]["days"] == EXPECTED_DAYS
        assert found.json()["backtest"]["failing_days"] == {"live": 1, "proposed": 4}
        assert found.json()["backtest"]["incidents"] == {"live": 1, "proposed": 3}
        plain = client.get(path, headers=carol)
        assert plain.status_code == 200 and "backtest" not in plain.json()
        assert plain.json()["quality_score"] == 83.81
        dave = _bearer(engine, tenant, "dave", "metadata_steward")
        assert client.get(path, params={"backtest": "true"}, headers=dave).status_code == 403
        assert client.get(path, params={"backtest": "true"}).status_code == 401
        missing = f"/approvals/{uuid.uuid4()}/preview"
        assert client.get(missing, params={"backtest": "true"}, headers=carol).status_code == 404
    with _client(engine, readings, backtest_days=3) as client:
        short = client.get(path, params={"backtest": "true"}, headers=carol).json()
        assert short["backtest"]["days"] == EXPECTED_DAYS[-2:]


def test_http_warehouse_failures_are_problems(engine, readings, tenant):
    approval_id = stricter_rule_pending(engine, tenant)
    carol = _bearer(engine, tenant, "carol", "kernel_owner")
    path = f"/approvals/{approval_id}/preview?backtest=true"
    with TestClient(create_app(Settings(), engine=engine)) as client:
        unknown = client.get(path, headers=carol)
        assert unknown.status_code == 503
        assert "MDSTUDIO_SOURCE_WH_URL" in unknown.json()["detail"]


# -- the console ----------------------------------------------------------------------------------


def _signed_in(engine, readings, tenant) -> Browser:
    """Carol, a kernel owner, signed in to the console of an app that reaches the warehouse."""
    secret, _ = tokens.create_token(UnitOfWork(engine), person(tenant, "carol", "kernel_owner"))
    app = create_app(Settings(sources={"WH": readings}), engine=engine)
    carol = Browser(TestClient(app), secret)
    assert carol.sign_in().status_code == 303
    return carol


def test_console_request_page_shows_the_backtest_chart_and_counts(engine, readings, tenant):
    approval_id = stricter_rule_pending(engine, tenant)
    carol = _signed_in(engine, readings, tenant)
    page = carol.get(f"/ui/approvals/{approval_id}").text
    assert 'data-testid="backtest-button"' in page
    shown = carol.post(f"/ui/approvals/{approval_id}/backtest")
    assert shown.status_code == 200, shown.text
    html = shown.text
    assert 'data-testid="backtest-chart"' in html
    assert 'data-testid="backtest-minimum"' in html
    assert html.count("<svg") >= 1 and 'data-testid="backtest-live"' in html
    failing = html.split('data-testid="backtest-failing"')[1].split("</tr>")[0]
    assert '<td data-label="Live">1</td><td data-label="Proposed">4</td>' in failing
    incidents = html.split('data-testid="backtest-incidents"')[1].split("</tr>")[0]
    assert '<td data-label="Live">1</td><td data-label="Proposed">3</td>' in incidents
    assert "2026-11-01" in html and "2026-11-09" in html
    refused = carol.post(f"/ui/approvals/{approval_id}/backtest", csrf=False)
    assert refused.status_code == 403


def test_console_backtest_without_a_partition_says_it_needs_one(engine, readings, tenant):
    approval_id = stricter_rule_pending(engine, tenant, incremental=None)
    carol = _signed_in(engine, readings, tenant)
    html = carol.post(f"/ui/approvals/{approval_id}/backtest").text
    assert 'data-testid="backtest-needs"' in html and "a day partition" in html


def test_console_change_set_page_backtests_per_item(engine, uow, readings, tenant):
    approve_metadata(engine, tenant, key=KEY, binding=binding(LIVE_COLUMNS))
    change_set = change_sets.submit(
        uow,
        person(tenant, "alice"),
        "Stricter amounts",
        [metadata_request(key=KEY, binding=binding(PROPOSED_COLUMNS))],
        Settings(),
    )
    carol = _signed_in(engine, readings, tenant)
    set_id = change_set.approval.id
    assert 'data-testid="backtest-button"' in carol.get(f"/ui/approvals/{set_id}").text
    html = carol.post(f"/ui/approvals/{set_id}/backtest").text
    assert 'data-testid="backtest" data-item="1"' in html
    assert 'data-testid="backtest-chart"' in html


def test_json_shape_is_what_the_issue_names(cli_env, engine, tenant):
    approval_id = stricter_rule_pending(engine, tenant)
    found = json.loads(preview(approval_id, "--json").stdout)["backtest"]
    assert {"days", "failing_days", "incidents"} <= set(found)
    assert all(set(day) == {"day", "live_score", "proposed_score"} for day in found["days"])
    assert set(found["failing_days"]) == set(found["incidents"]) == {"live", "proposed"}
