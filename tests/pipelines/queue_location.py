"""A code location for the queue test (tests/pipelines/test_run_queue.py): a job that only takes
a moment, and a sensor asking once for 10 of its runs on source `alpha` and 2 on `beta`, tagged
as the profiling runs are."""

import time

import dagster as dg

RUNS = {"alpha": 10, "beta": 2}


@dg.op
def pause() -> None:
    time.sleep(1)


@dg.job
def tiny_job() -> None:
    pause()


@dg.sensor(job=tiny_job, minimum_interval_seconds=1, default_status=dg.DefaultSensorStatus.RUNNING)
def queue_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    if context.cursor:
        return dg.SkipReason("the runs were asked for")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(run_key=f"{source}-{n}", tags={"mdstudio/source": source})
            for source, count in RUNS.items()
            for n in range(count)
        ],
        cursor="asked",
    )


defs = dg.Definitions(jobs=[tiny_job], sensors=[queue_sensor])
