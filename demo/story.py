"""The mdstudio story, end to end, through the real `mdstudio` command line.

Runs in a fresh demo home (`.mdstudio/demo`, SQLite, no service needed) and prints each command
before its output, so the transcript doubles as a tutorial. Re-running starts from scratch.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOME = ROOT / ".mdstudio" / "demo"
MDSTUDIO = str(Path(sys.executable).with_name("mdstudio"))
TENANT = str(uuid.UUID("00000000-0000-4000-8000-000000000001"))

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
    *args: str, user: str, roles: str = "", stdin: str | None = None, expect: int = 0
) -> str:
    """Run one CLI command as `user`, echo it and its output, and check its exit code."""
    shown = " ".join(["mdstudio", *args])
    print(f"$ {shown}    # as {user}" + (f" ({roles})" if roles else ""))
    env = {
        **os.environ,
        "MDSTUDIO_HOME": str(HOME),
        "MDSTUDIO_TENANT": TENANT,
        "MDSTUDIO_USER": user,
        "MDSTUDIO_ROLE": roles,
    }
    env.pop("MDSTUDIO_DATABASE_URL", None)
    result = subprocess.run(
        [MDSTUDIO, *args], input=stdin, capture_output=True, text=True, env=env, check=False
    )
    print((result.stdout + result.stderr).rstrip())
    if result.returncode != expect:
        sys.exit(f"demo: expected exit code {expect}, got {result.returncode}")
    return result.stdout


def submit(request: dict, user: str) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(request, handle)
    try:
        out = mdstudio("approvals", "submit", "--file", handle.name, "--json", user=user)
    finally:
        os.unlink(handle.name)
    return json.loads(out)["id"]


def main() -> None:
    shutil.rmtree(HOME, ignore_errors=True)
    say("Create the metadata store (embedded SQLite under .mdstudio/demo)")
    mdstudio("db", "upgrade", user="admin")

    say("Alice, a steward, proposes a tier1 field bound to the orders table")
    approval = submit(GROSS_AMOUNT, user="alice")

    say("Alice may not approve her own request (four-eyes): exit code 3")
    mdstudio("approvals", "approve", approval, user="alice", roles="kernel_owner", expect=3)
    say("Bob is a steward, but tier1 on the kernel lane needs a kernel_owner: exit code 3")
    mdstudio("approvals", "approve", approval, user="bob", roles="metadata_steward", expect=3)

    say("Carol, a kernel owner, sees it in her inbox and approves it")
    mdstudio("approvals", "list", "--status", "pending", user="carol", roles="kernel_owner")
    mdstudio("approvals", "approve", approval, user="carol", roles="kernel_owner")
    say("Approving twice is a conflict: exit code 5")
    mdstudio("approvals", "approve", approval, user="carol", roles="kernel_owner", expect=5)

    say("A description-only edit is not structural: no profiling is asked for")
    edit = json.loads(json.dumps(GROSS_AMOUNT))
    edit["payload"]["description"] = "Revenue of an order line before discounts, returns and tax"
    edit_id = submit(edit, user="alice")
    mdstudio("approvals", "approve", edit_id, user="carol", roles="kernel_owner")

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

    say("The live catalog and the event stream every consumer reads")
    mdstudio("metadata", "list", user="dave")
    mdstudio("events", "list", user="dave")
    print(
        f"\nExplore further with: MDSTUDIO_HOME={HOME} MDSTUDIO_TENANT={TENANT} "
        f"MDSTUDIO_USER=you {MDSTUDIO} --help"
    )


if __name__ == "__main__":
    main()
