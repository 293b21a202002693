"""The mdstudio story, end to end, through the real `mdstudio` command line and a real Dagster
daemon.

Runs in a fresh demo home (`.mdstudio/demo`: SQLite store, SQLite Dagster instance, a SQLite
demo warehouse with known defects; no service needed) and prints each command before its
output, so the transcript doubles as a tutorial. Re-running starts from scratch.
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import os
import queue
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from demo import warehouse

ROOT = Path(__file__).resolve().parents[1]
HOME = ROOT / ".mdstudio" / "demo"
BIN = Path(sys.executable).parent
MDSTUDIO = str(BIN / "mdstudio")
TENANT = str(uuid.UUID("00000000-0000-4000-8000-000000000001"))
ENV = {
    **os.environ,
    "MDSTUDIO_HOME": str(HOME),
    "MDSTUDIO_DATABASE_URL": f"sqlite:///{HOME / 'mdstudio.db'}",
    "DAGSTER_HOME": str(HOME / "dagster"),
    "MDSTUDIO_SOURCE_DEMO_URL": f"sqlite:///{HOME / 'warehouse.db'}",
    # The finance team asks more of its tier1 fields than the default 80.
    "MDSTUDIO_TIER1_MIN_SCORE": "95",
    "MDSTUDIO_SENSOR_INTERVAL_SECONDS": "3",
    "MDSTUDIO_NOTIFY_INTERVAL_SECONDS": "3",
    # The demo's webhook receiver listens on loopback, which webhooks may not reach by default.
    "MDSTUDIO_NOTIFY_ALLOW_PRIVATE": "1",
    "MDSTUDIO_TENANT": TENANT,
    # /metrics is off without a token; Prometheus would send this one as a bearer token.
    "MDSTUDIO_METRICS_TOKEN": secrets.token_urlsafe(32),
}
for unset in ("MDSTUDIO_DAGSTER_STORAGE_URL",):
    ENV.pop(unset, None)

GROSS_AMOUNT = {
    "entity_type": "GLOBAL_METADATA",
    "entity_key": "finance.revenue.gross_amount",
    "tier": "tier1",
    "lane": "kernel",
    "payload": {
        "canonical_key": "finance.revenue.gross_amount",
        "label": "Gross amount",
        "description": "Order revenue before discounts and tax",
        "tier": "tier1",
        "domain": "finance",
        "owner": "finance-data",
        "data_type": "decimal(18,2)",
        "binding": {
            "source": "demo",
            "table": "orders",
            "columns": [
                {"name": "order_id", "unique": True},
                {"name": "gross_amount", "min": 0},
                {"name": "currency", "allowed_values": ["EUR", "USD", "GBP"]},
            ],
        },
    },
}


def say(text: str) -> None:
    print(f"\n== {text}")


def mdstudio(
    *args: str,
    user: str,
    roles: str = "",
    expect: int = 0,
    quiet: bool = False,
    echo: bool = True,
) -> str:
    """Run one CLI command as `user`, echo it and its output (unless `echo` is off: the caller
    prints it), and check its exit code."""
    shown = " ".join(["mdstudio", *args])
    print(f"$ {shown}    # as {user}" + (f" ({roles})" if roles else ""))
    env = {**ENV, "MDSTUDIO_USER": user, "MDSTUDIO_ROLE": roles}
    result = subprocess.run([MDSTUDIO, *args], capture_output=True, text=True, env=env, check=False)
    if quiet and result.returncode == 0:
        record = json.loads(result.stdout)
        print(
            f"submitted {record['id']}: {record['entity_type']} {record['entity_key']} "
            f"({record['tier']}, {record['lane']} lane) needs {record['required_role']}"
        )
    elif echo or result.returncode != 0:
        print((result.stdout + result.stderr).rstrip())
    if result.returncode != expect:
        sys.exit(f"demo: expected exit code {expect}, got {result.returncode}")
    return result.stdout


def submit(request: dict, user: str) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(request, handle)
    try:
        out = mdstudio(
            "approvals", "submit", "--file", handle.name, "--json", user=user, quiet=True
        )
    finally:
        os.unlink(handle.name)
    return json.loads(out)["id"]


def start_daemon() -> subprocess.Popen:
    """The Dagster daemon on the demo's SQLite instance, as `make dev` runs it."""
    subprocess.run(
        [sys.executable, "-m", "mdstudio_pipelines.lib.instance", str(ROOT / "dagster.yaml")],
        env=ENV,
        check=True,
        capture_output=True,
    )
    log = open(HOME / "daemon.log", "wb")  # noqa: SIM115 - lives as long as the daemon
    return subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")],
        cwd=ROOT,
        env=ENV,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_for_profiles(key: str, count: int, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = subprocess.run(
            [MDSTUDIO, "profiles", "history", key, "--json"],
            env={**ENV, "MDSTUDIO_USER": "demo"},
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode == 0 and len(json.loads(result.stdout)) >= count:
            return
        time.sleep(2)
    sys.exit(f"demo: no profile of {key} after {timeout:.0f}s; see {HOME / 'daemon.log'}")


class Receiver:
    """A team's webhook endpoint, as Slack or an on-call tool would be: it checks each
    delivery's signature with the secret it was given at subscription, and refuses one signed
    more than 5 minutes ago (a replay), as the receiver in docs/operator/observability.md does."""

    def __init__(self) -> None:
        self.secret = ""
        self.arrived: queue.Queue[tuple[bool, dict]] = queue.Queue()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                signed = verify_delivery(receiver.secret, self.headers, body)
                receiver.arrived.put((signed, json.loads(body)))
                self.send_response(204 if signed else 401)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/finance-oncall"


def verify_delivery(secret: str, headers, body: bytes, now: float | None = None) -> bool:
    """A delivery signed with `secret` less than 5 minutes ago, body unchanged."""
    timestamp = headers.get("X-Mdstudio-Timestamp", "")
    now = time.time() if now is None else now
    if not timestamp.isdigit() or abs(now - int(timestamp)) > 300:
        return False  # no timestamp, or a replay
    signed = timestamp.encode() + b"." + body
    expected = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers.get("X-Mdstudio-Signature", ""))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def show_metrics(pattern: str) -> None:
    """`mdstudio serve` for a moment, and the lines of its /metrics that match."""
    port = free_port()
    server = subprocess.Popen(
        [MDSTUDIO, "serve", "--port", str(port), "--no-access-log"],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                url = f"http://127.0.0.1:{port}/metrics"
                bearer = {"Authorization": f"Bearer {ENV['MDSTUDIO_METRICS_TOKEN']}"}
                scrape = urllib.request.Request(url, headers=bearer)
                with urllib.request.urlopen(scrape, timeout=2) as response:
                    text = response.read().decode()
                break
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit("demo: mdstudio serve did not answer")
                time.sleep(0.3)
        bearer_header = '"Authorization: Bearer $MDSTUDIO_METRICS_TOKEN"'
        print(f"$ curl -s -H {bearer_header} {url} | grep {pattern}")
        print("\n".join(line for line in text.splitlines() if line.startswith(pattern)))
    finally:
        server.terminate()
        server.wait(15)


def change_set_story() -> None:
    """A change set of two items, decided once, by two kernel owners."""
    say("Ada asks for two kernel owners on every tier1 change (a two-person rule)")
    mdstudio(
        "policy", "set", "--lane", "kernel", "--tier", "tier1",
        "--required-role", "kernel_owner", "--approvals", "2",
        user="ada", roles="tenant_admin",
    )  # fmt: skip
    say("Alice submits two changes as one change set: a JSON Lines file, one request per line")
    net_amount = json.loads(json.dumps(GROSS_AMOUNT))
    net_amount["entity_key"] = net_amount["payload"]["canonical_key"] = "finance.revenue.net_amount"
    net_amount["payload"]["label"] = "Net amount"
    net_amount["payload"]["description"] = "Order revenue after discounts, before tax"
    term = {
        "entity_type": "GLOSSARY",
        "tier": "tier3",
        "lane": "governed",
        "payload": {
            "term": "Net Revenue",
            "definition": "Revenue after discounts, returns and allowances.",
            "related_keys": ["finance.revenue.net_amount"],
        },
    }
    changes = HOME / "changes.jsonl"
    changes.write_text("".join(json.dumps(request) + "\n" for request in (net_amount, term)))
    record = json.loads(
        mdstudio(
            "approvals", "submit", "--file", str(changes), "--title", "Net revenue", "--json",
            user="alice", quiet=True,
        )
    )  # fmt: skip
    change_set = record["id"]
    say("One row in the inbox; the set is decided by its strictest item's role, kernel_owner")
    mdstudio("approvals", "list", "--status", "pending", user="carol", roles="kernel_owner")
    mdstudio("approvals", "show", change_set, user="carol", roles="kernel_owner")
    say("Carol approves: with two approvers required, hers is an endorsement (still pending)")
    mdstudio("approvals", "approve", change_set, user="carol", roles="kernel_owner")
    say("Carol cannot count twice: exit code 5")
    mdstudio("approvals", "approve", change_set, user="carol", roles="kernel_owner", expect=5)
    say("Erin, a second kernel owner, approves: both items are applied in one transaction")
    mdstudio("approvals", "approve", change_set, user="erin", roles="kernel_owner")
    mdstudio("events", "list", "--after", str(last_event_before(change_set)), user="dave")
    say(
        "The operator's view of the stream: where each consumer of the outbox stands (the "
        "daemon has stopped, so the change set's events wait for it) and its dead letters"
    )
    mdstudio("events", "consumers", user="admin")
    mdstudio("events", "dead-letters", user="admin")


def last_event_before(change_set: str) -> int:
    """The id of the event before the change set's first (its events follow)."""
    result = subprocess.run(
        [MDSTUDIO, "events", "list", "--limit", "1000", "--json"],
        env={**ENV, "MDSTUDIO_USER": "dave"},
        capture_output=True,
        text=True,
        check=True,
    )
    ids = [e["id"] for e in json.loads(result.stdout) if e["correlation_id"] == change_set]
    return min(ids) - 1


PAYMENT_AMOUNT = {
    "entity_type": "GLOBAL_METADATA",
    "entity_key": "finance.payments.amount",
    "tier": "tier2",
    "lane": "governed",
    "payload": {
        "canonical_key": "finance.payments.amount",
        "label": "Payment amount",
        "description": "Amount of a customer payment, loaded every few hours",
        "tier": "tier2",
        "domain": "finance",
        "owner": "finance-data",
        "data_type": "decimal(18,2)",
        "binding": {
            "source": "demo",
            "table": "payments",
            "incremental": {"column": "loaded_at", "partition": "day"},
            "columns": [
                {"name": "payment_id", "unique": True},
                {"name": "amount", "min": 0},
            ],
        },
    },
}


def incremental_pass() -> None:
    """A field bound incrementally: its first profile reads the table, the next one only what
    was appended since."""
    key = "finance.payments.amount"
    say("A tier2 field on the payments table, which only grows: bound with binding.incremental")
    approval = submit(PAYMENT_AMOUNT, user="alice")
    mdstudio("approvals", "approve", approval, user="bob", roles="metadata_steward")
    wait_for_profiles(key, 1)
    say("Three payments are loaded; a profile is asked for (--force: within the rerun interval)")
    warehouse.load_payments(HOME / "warehouse.db", 3)
    mdstudio("profiles", "run", key, "--force", user="dave")
    wait_for_profiles(key, 2)
    say(
        "The first profile read the whole table (mode full); the second read the rows from the"
        " watermark's day on and checked the earlier ones (on SQLite by a checksum of their"
        " columns)"
    )
    history = json.loads(mdstudio("profiles", "history", key, "--json", user="dave", echo=False))
    for profile in reversed(history):
        print(
            f"{profile['mode']:<12} window {profile['watermark_before'] or '-'} .. "
            f"{profile['watermark_after']}  rows read {profile['rows_read']:>3}  "
            f"rows {profile['row_count']}  score {profile['quality_score']}  "
            f"{profile['full_reason'] or ''}"
        )
    say("Each day's counts and score (partition: day), as rule backtests read them")
    mdstudio("profiles", "days", key, user="dave")
    backtest_a_stricter_rule()


def backtest_a_stricter_rule() -> None:
    """Before deciding a stricter rule, its decider sees what it would have done to the last
    days: each day's score under the live and the proposed rules, and the failing days and
    incidents each would have caused."""
    say("Alice proposes a stricter rule: payments of at least 50 (today: at least 0)")
    stricter = json.loads(json.dumps(PAYMENT_AMOUNT))
    stricter["payload"]["binding"]["columns"][1]["min"] = 50
    approval = submit(stricter, user="alice")
    say("Bob backtests it before deciding: the table's days under both rule sets")
    mdstudio(
        "profiles", "preview", "--approval", approval, "--backtest",
        user="bob", roles="metadata_steward",
    )  # fmt: skip
    say(
        "Every day scores lower under it (none below the tier2 minimum): small payments are"
        " valid, so Bob rejects it, with the reason on the record"
    )
    mdstudio(
        "approvals", "reject", approval, "--reason", "small payments are valid",
        user="bob", roles="metadata_steward",
    )  # fmt: skip


def main() -> None:
    shutil.rmtree(HOME, ignore_errors=True)
    say("Create the metadata store and the demo warehouse (SQLite files under .mdstudio/demo)")
    mdstudio("db", "upgrade", user="admin")
    warehouse.build(HOME / "warehouse.db")
    print(
        "demo warehouse: orders (20 rows: a duplicate id, 3 missing and 2 negative amounts, "
        "4 bad currency codes)"
    )

    say("Alice, a steward, proposes a tier1 field bound to the orders table")
    approval = submit(GROSS_AMOUNT, user="alice")

    say("Before anyone approves, the evidence: a profile of the proposed binding (saves nothing)")
    mdstudio("profiles", "preview", "--approval", approval, user="carol", roles="kernel_owner")

    say("Alice may not approve her own request (four-eyes): exit code 3")
    mdstudio("approvals", "approve", approval, user="alice", roles="kernel_owner", expect=3)
    say("Bob is a steward, but tier1 on the kernel lane needs a kernel_owner: exit code 3")
    mdstudio("approvals", "approve", approval, user="bob", roles="metadata_steward", expect=3)

    say("Carol, a kernel owner, sees it in her inbox and approves it")
    mdstudio("approvals", "list", "--status", "pending", user="carol", roles="kernel_owner")
    mdstudio("approvals", "approve", approval, user="carol", roles="kernel_owner")
    say("Approving twice is a conflict: exit code 5")
    mdstudio("approvals", "approve", approval, user="carol", roles="kernel_owner", expect=5)

    say("A tier2 KPI built on the field goes through the stewards' governed lane")
    kpi = {
        "entity_type": "KPI",
        "entity_key": "finance.kpi.average_order_value",
        "tier": "tier2",
        "lane": "governed",
        "payload": {
            "canonical_key": "finance.kpi.average_order_value",
            "name": "Average order value",
            "expression": "sum(gross_amount) / count(*)",
            "depends_on": ["finance.revenue.gross_amount"],
            "tier": "tier2",
            "owner": "finance-data",
        },
    }
    kpi_id = submit(kpi, user="alice")
    mdstudio(
        "approvals",
        "reject",
        kpi_id,
        "--reason",
        "count distinct orders, not lines",
        user="bob",
        roles="metadata_steward",
    )
    say(
        "Alice submits it again, counting distinct orders; Bob approves it: in Dagster the KPI"
        " is an asset fed by the orders table's"
    )
    kpi["payload"]["expression"] = "sum(gross_amount) / count(distinct order_id)"
    mdstudio(
        "approvals", "approve", submit(kpi, user="alice"), user="bob", roles="metadata_steward"
    )

    say("The event stream the approvals left behind (the outbox Dagster reads)")
    mdstudio("events", "list", user="dave")

    say("Ada, the tenant admin, subscribes the finance on-call webhook to quality incidents")
    receiver = Receiver()
    subscription = json.loads(
        mdstudio(
            "notifications",
            "subscribe",
            "--url",
            receiver.url,
            "--json",
            user="ada",
            roles="tenant_admin",
        )
    )
    receiver.secret = subscription["secret"]  # shown once; the receiver keeps it

    say("Dagster's daemon starts: approval_sensor reads the outbox, requests a profiling run")
    daemon = start_daemon()
    try:
        wait_for_profiles("finance.revenue.gross_amount", 1)
        say("The saved profile (tier1 minimum here is 95, MDSTUDIO_TIER1_MIN_SCORE)")
        mdstudio("profiles", "history", "finance.revenue.gross_amount", user="dave")
        say("The KPI on it is trusted as far as its weakest input: the field's score")
        mdstudio("lineage", "finance.kpi.average_order_value", user="dave")

        say("The score fails the tier1 check: a quality incident opens")
        mdstudio("incidents", "list", user="dave")
        say("notification_sensor tells the on-call webhook: one signed message for the run")
        try:
            signed, message = receiver.arrived.get(timeout=120)
        except queue.Empty:
            sys.exit(f"demo: no notification arrived; see {HOME / 'daemon.log'}")
        print(
            f"receiver: delivery {message['delivery_id']}, signature "
            + ("verified" if signed else "WRONG")
        )
        print("\n".join(f"receiver: {line}" for line in message["text"].splitlines()))
        if not signed:
            sys.exit("demo: the delivery's signature did not verify")
        mdstudio("notifications", "deliveries", user="ada", roles="tenant_admin")

        say("What Prometheus scrapes from `mdstudio serve` (deploy/prometheus, Grafana dashboard)")
        show_metrics("mdstudio_quality_")

        say("A description-only edit is not structural: no profiling is asked for")
        edit = json.loads(json.dumps(GROSS_AMOUNT))
        edit["payload"]["description"] = "Revenue of an order line before discounts and tax"
        mdstudio(
            "approvals", "approve", submit(edit, user="alice"), user="carol", roles="kernel_owner"
        )
        say("Asking again within the minimum rerun interval: the cost guard skips it")
        mdstudio("profiles", "run", "finance.revenue.gross_amount", user="dave")
        time.sleep(8)  # a couple of sensor ticks

        say("The entity's audit trail, from Dagster's event log")
        mdstudio("audit", "finance.revenue.gross_amount", user="dave")

        incremental_pass()
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(30)
    change_set_story()
    print(
        "\nWatch it in the Dagster UI (then open http://127.0.0.1:3000; Lineage shows the orders"
        f" table feeding the KPI):\n  MDSTUDIO_HOME={HOME} "
        f"MDSTUDIO_SOURCE_DEMO_URL={ENV['MDSTUDIO_SOURCE_DEMO_URL']} make dev"
    )


if __name__ == "__main__":
    main()
