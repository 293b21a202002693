"""A notification_sensor pass after pass, in a process of its own, for the crash tests: it
collects the outbox into deliveries (`MDSTUDIO_DATABASE_URL`) until nothing is left, so a test
can kill it at any moment and start it again. `PASS_PAUSE_SECONDS` spaces the passes out, so
that a kill at a random moment lands between two of them whatever the machine's speed."""

import os
import time

from mdstudio_core.adapters.database import create_store_engine
from mdstudio_core.config import Settings
from mdstudio_core.service_layer import notifications
from mdstudio_core.service_layer.unit_of_work import UnitOfWork

PAGE = 50


def main() -> None:
    settings = Settings.from_env()
    engine = create_store_engine(settings.store_url, settings.store_timeouts)
    pause = float(os.environ.get("PASS_PAUSE_SECONDS", "0"))
    while notifications.collect(UnitOfWork(engine), PAGE, settings).read:
        time.sleep(pause)
    engine.dispose()


if __name__ == "__main__":
    main()
