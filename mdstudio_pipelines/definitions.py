"""The Dagster code location: assembles mdstudio's assets, sensors, checks and schedules."""

from __future__ import annotations

import dagster as dg

defs = dg.Definitions()
