"""The code location's definitions by role: assets, KPIs, checks, jobs, schedules, sensors and
the run planning the sensors share; `mdstudio_pipelines.definitions` assembles them."""
