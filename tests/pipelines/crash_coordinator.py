"""A run coordinator for the crash test: it queues runs exactly as Dagster's own does, and, while
the file named by `MDSTUDIO_TEST_CRASH_AFTER_SUBMIT` exists, kills its own process (the daemon)
right after queueing a run. That is the window the sensor's design exists for: runs launched,
cursor not committed. The file is removed first, so the restarted daemon does not crash again."""

import os
import signal

import dagster as dg

CRASH_FLAG = "MDSTUDIO_TEST_CRASH_AFTER_SUBMIT"


class CrashAfterSubmitCoordinator(dg.QueuedRunCoordinator):
    def submit_run(self, context):  # type: ignore[no-untyped-def]
        run = super().submit_run(context)
        flag = os.environ.get(CRASH_FLAG)
        if flag and os.path.exists(flag):
            os.remove(flag)
            os.kill(os.getpid(), signal.SIGKILL)
        return run
