"""No secret in any message (issue 18, item 5). First line: a store or source URL whose
authority holds more than one `@` is refused where it is read, naming its variable, never shown.
Second line: every error text that leaves the process (CLI output, HTTP problems and events,
console pages, `metadata.profile.failed` events and the webhook text made from them, log
records) is scrubbed of credentials (`config.scrub`), tried with a real driver error that
quotes `user:password@host`. The Dagster side is in tests/pipelines/test_pipelines.py."""

from __future__ import annotations

import io
import json
import logging
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mdstudio_core.config import Settings, check_url, scrub
from mdstudio_core.domain.errors import ConfigurationError
from mdstudio_core.domain.notifications import summary
from mdstudio_core.entrypoints.http import create_app
from mdstudio_core.entrypoints.logs import scrub_log_records
from mdstudio_core.service_layer import tokens
from mdstudio_core.service_layer.profiling import ProfileTarget, run_profiles
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.console.conftest import Browser, error_of
from tests.support.cli_helpers import run_cli
from tests.support.factories import metadata_request, person

SECRET = "Sup3rSecret"
LEAKY_URL = f"postgresql+psycopg://reader:p@ss:{SECRET}@127.0.0.1:5432/wh"
BINDING = {"source": "wh", "table": "orders", "columns": [{"name": "gross_amount"}]}


def test_a_malformed_source_url_is_named_never_shown(store_url, engine, uow, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    tenant = str(uuid.uuid4())
    monkeypatch.setenv("MDSTUDIO_DATABASE_URL", store_url)
    monkeypatch.setenv("MDSTUDIO_TENANT", tenant)
    monkeypatch.setenv("MDSTUDIO_SOURCE_WH_URL", LEAKY_URL)
    seen: list[str] = []

    def cli(*args: str, stdin: str = "") -> dict:
        result = run_cli(list(args), stdin)
        seen.extend([result.stdout, result.stderr])
        return {"code": result.exit_code, "out": result.stdout, "err": result.stderr}

    request = json.dumps(metadata_request(binding=BINDING))
    submitted = cli("approvals", "submit", "--file", "-", "--user", "a", "--json", stdin=request)
    approval_id = json.loads(submitted["out"])["id"]
    preview = cli(
        "profiles", "preview", "--approval", approval_id, "--user", "b", "--role", "kernel_owner"
    )
    assert preview["code"] == 1
    assert "MDSTUDIO_SOURCE_WH_URL" in preview["err"]
    cli("approvals", "approve", approval_id, "--user", "b", "--role", "kernel_owner")
    live = cli(
        "profiles",
        "preview",
        "finance.revenue.gross_amount",
        "--user",
        "b",
        "--role",
        "kernel_owner",
        "--json",
    )
    assert live["code"] == 1
    cli("events", "list", "--json", "--user", "b")
    cli("metadata", "show", "finance.revenue.gross_amount", "--user", "b")

    secret, _ = tokens.create_token(uow, person(uuid.UUID(tenant), "c"))
    headers = {"Authorization": f"Bearer {secret}"}
    with TestClient(create_app(engine=engine)) as client:
        for path in ("/approvals?include=payload", "/events", "/metadata", "/openapi.json"):
            seen.append(client.get(path, headers=headers).text)
        seen.append(
            client.post(
                "/approvals", json=metadata_request("k.x", binding=BINDING), headers=headers
            ).text
        )

    assert all(SECRET not in text for text in seen)
    assert all(SECRET not in record.getMessage() for record in caplog.records)
    assert all(SECRET not in (record.exc_text or "") for record in caplog.records)


# -- the issue's example: a password holding an unencoded `@` ----------------------------------

ISSUE_URL = "postgresql+psycopg://postgres:Tr0ub4dor@correcthorsebattery@127.0.0.1:5432/db"
PASSWORD_PIECES = ("Tr0ub4dor", "correcthorsebattery")
TWO_AT_SIGNS = (
    "holds more than one @ before its host: write an @ in the password (or user name) as %40 "
    "(the value is not shown: it holds a password)"
)


def every_exit(engine, tenant: uuid.UUID, source: str) -> tuple[list[str], dict]:
    """A tier1 field bound to `source` (configured in the environment), driven through every
    way an error leaves the process: the CLI's preview of the request and of the live field,
    the console's evidence, a profiling run (its `metadata.profile.failed` event) read back by
    `mdstudio events list`, `GET /events` and as webhook text, and an HTTP problem. Returns
    every text seen, and the recorded failure event's payload."""
    seen: list[str] = []
    binding = {"source": source, "table": "orders", "columns": [{"name": "gross_amount"}]}

    def cli(*args: str, stdin: str = "", user: str = "carol") -> Any:
        result = run_cli([*args, "--tenant", str(tenant), "--user", user], stdin)
        seen.extend([result.stdout, result.stderr])
        return result

    request = json.dumps(metadata_request(binding=binding))
    approval_id = cli("approvals", "submit", "--file", "-", "--json", stdin=request, user="a").json[
        "id"
    ]
    assert cli("profiles", "preview", "--approval", approval_id, "--role", "kernel_owner").exit_code
    settings = Settings.from_env()
    secret, _ = tokens.create_token(UnitOfWork(engine), person(tenant, "carol", "kernel_owner"))
    with TestClient(create_app(settings, engine=engine)) as client:
        browser = Browser(client, secret)
        assert browser.sign_in().status_code == 303
        evidence = browser.post(f"/ui/approvals/{approval_id}/evidence")
        seen.append(evidence.text)
        assert evidence.status_code == 200 and error_of(evidence.text)
    assert cli("approvals", "approve", approval_id, "--role", "kernel_owner").exit_code == 0
    assert cli("profiles", "preview", KEY, "--role", "kernel_owner").exit_code == 1
    outcome = run_profiles(
        UnitOfWork(engine), settings, tenant, [ProfileTarget(KEY)], run_id="run-1"
    )
    seen.extend(outcome.failed.values())
    listed = cli("events", "list", "--json", "--role", "kernel_owner").json
    [failure] = [event for event in listed if event["type"] == "metadata.profile.failed"]
    seen.append(summary([failure]))  # the webhook's text
    headers = {"Authorization": f"Bearer {secret}"}
    with TestClient(create_app(settings, engine=engine)) as client:
        seen.append(client.get("/events", headers=headers).text)
        # A problem quoting the path back (a key it does not know).
        seen.append(client.get(f"/lineage/reader:Sup3rSecret@{source}", headers=headers).text)
    return seen, failure["payload"]


KEY = "finance.revenue.gross_amount"


def test_the_issues_source_url_is_refused_naming_its_variable(engine, tenant, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("MDSTUDIO_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("MDSTUDIO_SOURCE_LEAK_URL", ISSUE_URL)

    seen, failure = every_exit(engine, tenant, "leak")

    refusal = f"source 'leak': MDSTUDIO_SOURCE_LEAK_URL {TWO_AT_SIGNS}"
    assert failure["error"] == refusal
    assert sum(refusal in text for text in seen) >= 4  # CLI, console, event, GET /events...
    assert not [piece for piece in PASSWORD_PIECES for text in seen if piece in text]
    logged = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    assert not [piece for piece in PASSWORD_PIECES for text in logged if piece in text]


@pytest.mark.parametrize("variable", ["MDSTUDIO_DATABASE_URL", "MDSTUDIO_DAGSTER_STORAGE_URL"])
def test_a_store_url_with_two_at_signs_stops_every_command(variable, monkeypatch):
    url = ISSUE_URL.replace("psycopg", "psycopg2") if "DAGSTER" in variable else ISSUE_URL
    monkeypatch.setenv(variable, url)
    for command in (["db", "upgrade"], ["approvals", "list", "--tenant", str(uuid.uuid4())]):
        result = run_cli(command)
        assert result.exit_code == 1
        assert (
            result.stderr
            == f"error (ConfigurationError): {variable}: Value error, {TWO_AT_SIGNS}\n"
        )
        assert result.stdout == ""
    with pytest.raises(ConfigurationError) as refused:
        Settings.from_env({variable: url})
    assert refused.value.variable == variable


@pytest.mark.parametrize(
    "url",
    [
        ISSUE_URL,
        "postgresql://u@a@host/db",  # the user name's `@`
        "postgresql://u:p/x@y@host/db",  # SQLAlchemy reads password `p/x`, host `y@host`
        "mysql+pymysql://u:p@q@host:3306/db",
    ],
)
def test_urls_with_more_than_one_at_before_the_host_are_refused(url):
    with pytest.raises(ValueError) as refused:
        check_url(url)
    assert str(refused.value) == TWO_AT_SIGNS


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://postgres:Tr0ub4dor%40correcthorsebattery@127.0.0.1:5432/db",
        "postgresql://u:p@host/db@x",  # an `@` in the database name, after the host
        "postgresql://u:p/x@host/db",
        "postgresql://host:5432/db",
        "sqlite:////tmp/a@b@c.db",
        "sqlite:///a@b.db",
    ],
)
def test_urls_with_at_most_one_at_before_the_host_pass(url):
    assert check_url(url) == url


# -- the second line: a real driver error quoting credentials ---------------------------------

# psycopg resolves `host` itself and quotes it when it cannot: "failed to resolve host
# 'reader:Sup3rSecret@nowhere.invalid'", the shape of the leak the issue saw.
DRIVER_LEAK_URL = (
    "postgresql+psycopg://postgres@127.0.0.1:5432/db?host=reader:Sup3rSecret%40nowhere.invalid"
)


def test_a_driver_error_quoting_credentials_is_scrubbed_on_every_exit(
    engine, tenant, monkeypatch, caplog
):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("MDSTUDIO_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("MDSTUDIO_SOURCE_WH_URL", DRIVER_LEAK_URL)

    seen, failure = every_exit(engine, tenant, "wh")

    scrubbed = "cannot connect to source 'wh': failed to resolve host '***@nowhere.invalid'"
    assert failure["error"].startswith(scrubbed)
    assert sum(scrubbed in text for text in seen) >= 6  # CLI twice, event, webhook, /events...
    assert sum("***@nowhere.invalid" in text for text in seen) >= 7  # ...and the console page
    assert [text for text in seen if "Sup3rSecret" in text] == []
    logged = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    assert [text for text in logged if "Sup3rSecret" in text] == []


# -- the scrub itself ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        (
            "failed to resolve host 'reader:Sup3rSecret@db.internal': no such host",
            "failed to resolve host '***@db.internal': no such host",
        ),
        (
            "cannot open postgresql://u:p@ss:w@rd@db/x (refused)",
            "cannot open postgresql://***@db/x (refused)",
        ),
        (
            'database "nosuch//leak:Sup3rSecret@db" does not exist',
            'database "nosuch//***@db" does not exist',
        ),
        ("<a>https://token@hooks.example.com/x</a>", "<a>https://***@hooks.example.com/x</a>"),
        ("url=redis://:hunter2@cache:6379/0", "url=redis://***@cache:6379/0"),
        (
            "ask bob@example.com at 12:30, see https://example.com/a:b",
            "ask bob@example.com at 12:30, see https://example.com/a:b",
        ),
        ("path /srv/a:b@c", "path /srv/***@c"),
        ("", ""),
    ],
)
def test_scrub_hides_credentials_in_any_url_or_user_password_pair(text, scrubbed):
    assert scrub(text) == scrubbed


def test_scrub_hides_every_piece_of_a_configured_password_wherever_it_appears():
    urls = [
        "postgresql+psycopg://app:s3cr%2Ft@db:5432/x",  # a `/` in the password, encoded
        "postgresql://u@a@host/db",
        ISSUE_URL,
        None,
        "sqlite:///plain.db",
    ]
    text = "s3cr/t s3cr%2Ft u a Tr0ub4dor correcthorsebattery@127.0.0.1 host db postgres plain.db"
    assert scrub(text, urls) == "*** *** u a *** ***@127.0.0.1 host db postgres plain.db"
    settings = Settings(database_url="postgresql+psycopg://app:Pa55word@db/x")
    assert settings.scrub("bad password Pa55word for app") == "bad password *** for app"
    assert Settings(sources={"WH": "postgresql://r:Wh5ecret@h/db"}).scrub("Wh5ecret") == "***"


def test_log_records_are_scrubbed_whatever_handler_writes_them():
    original = logging.getLogRecordFactory()
    written = io.StringIO()
    handler = logging.StreamHandler(written)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log = logging.getLogger("tests.secrets")
    log.addHandler(handler)
    try:
        scrub_log_records(Settings(database_url="postgresql://app:Pa55word@db/x"))
        scrub_log_records(Settings(database_url="postgresql://app:Other5ecret@db/x"))  # replaces
        log.warning("cannot reach %s", "postgresql://reader:Sup3rSecret@wh/db")
        log.warning("auth failed with Other5ecret; %d retries", 3)
        try:
            raise OSError("failed to resolve host 'reader:Sup3rSecret@wh'")
        except OSError:
            log.exception("profile failed")
        log.warning("untouched %s", "text")
    finally:
        log.removeHandler(handler)
        logging.setLogRecordFactory(original)
    output = written.getvalue()
    assert "Sup3rSecret" not in output and "Other5ecret" not in output
    assert "WARNING cannot reach postgresql://***@wh/db\n" in output
    assert "WARNING auth failed with ***; 3 retries\n" in output
    assert "OSError: failed to resolve host '***@wh'" in output
    assert output.endswith("WARNING untouched text\n")
