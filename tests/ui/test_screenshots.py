"""The screenshots in docs/ui.md, taken from a real run (so they show what the UI shows).

Every run takes them; they replace the ones in docs/ only with TAPEFLOW_UI_SCREENSHOTS=1
(``TAPEFLOW_UI_SCREENSHOTS=1 ./scripts/test tests/ui/test_screenshots.py``), so that a test
run leaves the checkout as it found it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from tests.ui import workflows
from tests.ui.conftest import UI

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize("backend_url", ["sqlite"], indirect=True)  # one set of pictures
async def test_screenshots_of_the_list_and_a_workflow(ui: UI, page: Page, tmp_path: Path) -> None:
    shots = DOCS if os.environ.get("TAPEFLOW_UI_SCREENSHOTS") == "1" else tmp_path
    order = await ui.client.start_workflow(workflows.order, "teapot", id="order-1042")
    for n in range(3):
        await ui.client.start_workflow(workflows.counter, f"lane {n}", id=f"counter-{n}")
    await page.goto(ui.workflow("order-1042"))
    await expect(page.locator('[data-var="stage"]')).to_have_text('"waiting for approval"')
    await order.send_event("approve", "ops@example.com")
    await expect(page.locator("#status")).to_have_text("failed")
    await page.locator(".failure details").first.click()  # open the traceback
    await page.screenshot(path=shots / "ui-workflow.png", full_page=True)

    await page.goto(ui.url)
    await expect(page.locator("table.workflows tbody tr")).to_have_count(5)
    await page.screenshot(path=shots / "ui-list.png")
    assert (shots / "ui-list.png").stat().st_size > 0
