"""The docs' picture of the Dagster UI's lineage after the demo (docs/img/dagster-lineage.png).

Run it while the UI the demo prints last (`make dev` on the demo's home) is up:
`.venv/bin/python demo/lineage_screenshot.py [UI URL]`. It drives the system's Chromium
(Playwright pointed at /usr/bin/chromium; `playwright install` is never used), skips the UI's
first-visit dialog and photographs the demo tenant's asset group: the orders table feeding the
KPI approved on its field.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
PICTURE = ROOT / "docs" / "img" / "dagster-lineage.png"
# The demo tenant's asset group: `t_` and its id's groups, last first (an unnamed tenant's label).
GROUP = "t_000000000001_8000_4000_0000_00000000"


def photograph(ui: str, picture: Path = PICTURE) -> None:
    """Write the group's lineage graph, as a newcomer first sees it, to `picture`."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
        page = browser.new_page(viewport={"width": 1400, "height": 800})
        page.goto(f"{ui}/locations/mdstudio/asset-groups/{GROUP}/lineage", wait_until="networkidle")
        # The community dialog shows only on an instance's first visit.
        with contextlib.suppress(PlaywrightError):
            page.get_by_role("button", name="Skip").click(timeout=15_000)
        page.get_by_text("finance.kpi.average_order_value").first.wait_for()
        page.wait_for_load_state("networkidle")
        page.screenshot(path=picture)
        browser.close()


if __name__ == "__main__":
    photograph(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:3000")
    print(PICTURE)
