"""The `mdstudio` command line: a thin shell over the services, one module per command group
over `plumbing` (identity, runtime, exit codes) and `output` (text or JSON).

Exit codes: 0 ok, 1 environment or internal failure (database or warehouse unreachable, a store
timeout, a source not configured, a profile timeout), 2 invalid input (including a binding naming a
missing table or column), 3 forbidden, 4 not found, 5 conflict. Errors go to standard error and name
the reason; `--json` output goes to standard out.
"""

# Imported so that each command module registers its group on `cli`.
from mdstudio_core.entrypoints.cli import (
    approvals,
    db,
    events,
    incidents,
    lineage,
    metadata,
    notifications,
    policy,
    profiles,
    serve,
    tokens,
)
from mdstudio_core.entrypoints.cli.events import DRY_RUNS, REPLAY_KEY
from mdstudio_core.entrypoints.cli.output import emit
from mdstudio_core.entrypoints.cli.plumbing import (
    Runtime,
    cli,
    common_options,
    main,
    runtime,
    tenant_id,
)

__all__ = [
    "DRY_RUNS",
    "REPLAY_KEY",
    "Runtime",
    "approvals",
    "cli",
    "common_options",
    "db",
    "emit",
    "events",
    "incidents",
    "lineage",
    "main",
    "metadata",
    "notifications",
    "policy",
    "profiles",
    "runtime",
    "serve",
    "tenant_id",
    "tokens",
]
