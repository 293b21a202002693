"""What the definitions are built with: the private-API wrapper, asset keys and partitions,
metadata formatting, the audit read-back, code-location reloads and the Dagster instance's
settings. Nothing here defines an asset, job, check, schedule or sensor (that is `defs/`)."""
