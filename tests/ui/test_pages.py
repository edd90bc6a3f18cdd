"""The UI in a real browser: list and filter, a workflow's live variables and its history
stepped through, actions, and what a hostile id or value cannot do."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from playwright.async_api import Page, expect

import tapeflow
import tapeflow.ui
from tests.ui import workflows
from tests.ui.conftest import UI, running


async def test_the_list_filters_by_status_and_id_prefix(ui: UI, page: Page) -> None:
    for n in range(3):
        await ui.client.start_workflow(workflows.counter, "c", id=f"count-{n}")
    await (await ui.client.start_workflow(workflows.receipt, "book", id="receipt-1")).result(
        timeout=10
    )
    rows = page.locator("table.workflows tbody tr")

    await page.goto(ui.url)
    await expect(rows).to_have_count(4)
    await expect(page.locator(".counts")).to_contain_text("completed 1")

    await page.select_option("select[name=status]", "completed")
    await page.click("button:text('Filter')")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("receipt-1")

    await page.goto(ui.url)
    await page.fill("input[name=id_prefix]", "count-")
    await page.click("button:text('Filter')")
    await expect(rows).to_have_count(3)
    await rows.get_by_text("count-1").click()
    await expect(page.locator("h1")).to_have_text("count-1")


async def test_a_running_workflows_variable_changes_on_the_page(ui: UI, page: Page) -> None:
    handle = await ui.client.start_workflow(workflows.counter, "live", id="live-1")
    await page.goto(ui.workflow("live-1"))
    count = page.locator('[data-var="count"]')
    await expect(count).to_have_text("0")

    await handle.send_event("tick")
    await expect(count).to_have_text("1")  # auto-refresh, no reload

    await handle.send_event("tick", "stop")
    await expect(page.locator("#status")).to_have_text("completed")
    await expect(page.locator("#result")).to_have_text("1")


async def test_stepping_back_shows_the_older_value(ui: UI, page: Page) -> None:
    handle = await ui.client.start_workflow(workflows.counter, "steps", id="steps-1")
    await page.goto(ui.workflow("steps-1"))
    count = page.locator('[data-var="count"]')
    for value in ("1", "2"):  # one task per tick, so each value is at an event of its own
        await handle.send_event("tick")
        await expect(count).to_have_text(value)

    first_tick = page.locator(".lane.event").first.locator("a.ev")
    await first_tick.click()
    await expect(page.locator(".step h2")).to_contain_text("As of event")
    await expect(count).to_have_text("1")
    await page.click("a[title='first event']")  # variables change once per workflow task
    await expect(count).to_have_text("0")
    await expect(page.locator("#pending-activities")).to_have_count(0)


async def test_a_workflow_is_cancelled_from_its_page(ui: UI, page: Page) -> None:
    await ui.client.start_workflow(workflows.counter, "doomed", id="cancel-me")
    await page.goto(ui.workflow("cancel-me"))
    await expect(page.locator('[data-var="count"]')).to_have_text("0")

    await page.click("summary:text('Cancel…')")
    await page.fill(".confirm input[name=reason]", "no longer needed")
    await page.click("#confirm-cancel")

    await expect(page.locator(".note")).to_have_text("cancel requested")
    await expect(page.locator("#status")).to_have_text("cancelled")
    record = await ui.client.describe("cancel-me")
    assert record.status is tapeflow.WorkflowStatus.CANCELLED
    assert record.reason == "no longer needed"


async def test_an_id_and_a_variable_holding_markup_show_as_text(
    ui: UI, page: Page, dialogs: list[str]
) -> None:
    hostile_id = "<script>alert('id')</script>"
    label = "<img src=x onerror=alert(1)><script>alert(2)</script>"
    await ui.client.start_workflow(workflows.counter, label, id=hostile_id)

    await page.goto(ui.url)
    await expect(page.locator("table.workflows")).to_contain_text(hostile_id)
    await page.goto(ui.workflow(hostile_id))
    await expect(page.locator("h1")).to_have_text(hostile_id)
    await expect(page.locator('[data-var="label"]')).to_have_text(f'"{label}"')
    await asyncio.sleep(0.3)
    assert await page.locator("main script, main img").count() == 0
    assert dialogs == []


async def test_a_workflow_is_reset_to_an_earlier_event(ui: UI, page: Page) -> None:
    handle = await ui.client.start_workflow(workflows.counter, "again", id="reset-me")
    await page.goto(ui.workflow("reset-me"))
    count = page.locator('[data-var="count"]')
    for value in ("1", "2"):
        await handle.send_event("tick")
        await expect(count).to_have_text(value)

    await page.locator(".lane.event").first.locator("a.ev").click()  # the first tick
    await page.click("summary:text('Reset…')")
    await page.click("#confirm-reset")

    await expect(page.locator(".note")).to_contain_text("reset to event")
    await expect(page.locator("a.previous-run")).to_be_visible()
    # The new run as of the reset point, just after the first tick (its first task then
    # gets the second tick again, re-delivered, so its latest count goes back to 2).
    note = await page.locator(".note").inner_text()
    cut = int(note.split("reset to event", 1)[1].split()[0].strip(".:,"))
    await page.goto(ui.workflow("reset-me", at=cut))
    await expect(count).to_have_text("1")


async def test_a_post_without_the_csrf_token_is_refused(ui: UI, page: Page) -> None:
    await ui.client.start_workflow(workflows.counter, "kept", id="guarded")
    await page.goto(ui.workflow("guarded"))
    cancel = f"{ui.url}/workflow/cancel"

    missing = await page.request.post(cancel, form={"id": "guarded"}, max_redirects=0)
    forged = await page.request.post(
        cancel, form={"id": "guarded", "csrf": "x" * 43}, max_redirects=0
    )

    assert (missing.status, forged.status) == (403, 403)
    assert (await ui.client.describe("guarded")).reason is None
    token = await page.locator("input[name=csrf]").first.get_attribute("value")
    assert token is not None
    sent = await page.request.post(cancel, form={"id": "guarded", "csrf": token}, max_redirects=0)
    assert sent.status == 303


async def test_with_a_token_the_ui_asks_for_it_once(backend_url: str, page: Page) -> None:
    app = tapeflow.ui.app(backend_url, token="s3cret")
    async with running(app) as url:
        assert (await page.request.get(f"{url}/workers", max_redirects=0)).status == 303
        bearer = {"Authorization": "Bearer s3cret"}
        assert (await page.request.get(f"{url}/workers", headers=bearer)).status == 200

        await page.goto(f"{url}/workers")
        await page.fill("input[name=token]", "wrong")
        await page.click("button:text('Log in')")
        await expect(page.locator(".error")).to_be_visible()
        await page.fill("input[name=token]", "s3cret")
        await page.click("button:text('Log in')")
        await expect(page.locator("h1")).to_have_text("Workflows")
        await page.goto(f"{url}/workers")
        await expect(page.locator("h1")).to_have_text("Workers")


async def test_the_workers_page_shows_each_worker_and_what_it_runs(
    ui: UI, backend: tapeflow.Backend, page: Page
) -> None:
    await page.goto(f"{ui.url}/workers")
    running = page.locator("#workers tbody tr.running")
    await expect(running).to_have_count(1)  # the fixture's worker
    await expect(running).to_contain_text("counter")  # a workflow it registered
    await expect(running).to_contain_text("charge")  # an activity it registered
    await expect(page.locator("#pollers")).to_contain_text("counter")

    async with tapeflow.Worker(backend, activities=[workflows.charge], name="billing-7"):
        await page.reload()
        second = page.locator("#workers tbody tr", has_text="billing-7")
        await expect(second).to_have_class("running")
    await expect(second).to_have_class("stopped")  # auto-refresh, no reload


async def test_the_queues_page_shows_limits_and_waiting_work(ui: UI, page: Page) -> None:
    mail = tapeflow.Queue("mail", concurrency=1, rate_limit=(10, timedelta(minutes=1)))
    for n in range(3):  # no worker of the fixture serves "mail": all three wait
        await ui.client.start_workflow(workflows.counter, "m", id=f"mail-{n}", queue=mail)
    await page.goto(f"{ui.url}/queues")
    row = page.locator('#queues tr[data-queue="mail"]')
    await expect(row.locator(".waiting")).to_have_text("3")
    await expect(row).to_contain_text("10 per 0:01:00")

    await page.goto(ui.workflow("mail-0"))
    await expect(page.locator(".summary")).to_contain_text("mail · priority 5")
    await expect(page.locator(".summary")).to_contain_text("waiting for admission to queue 'mail'")


async def test_the_schedules_page_lists_each_schedule_and_its_runs(ui: UI, page: Page) -> None:
    nightly = await ui.client.create_schedule(
        "nightly", workflows.receipt, "report", cron="0 3 * * *", timezone="Europe/Berlin"
    )
    often = await ui.client.create_schedule(
        "often", workflows.receipt, "tick", every=timedelta(seconds=1)
    )
    await nightly.pause()
    await page.goto(f"{ui.url}/schedules")
    paused = page.locator('#schedules tr[data-schedule="nightly"]')
    await expect(paused.locator(".state")).to_have_text("paused")
    await expect(paused).to_contain_text("0 3 * * *")
    await expect(paused).to_contain_text("Europe/Berlin")
    ran = page.locator('#schedules tr[data-schedule="often"] a')  # the fixture's worker fires it
    await expect(ran.first).to_contain_text("often@")
    await ran.first.click()
    await expect(page.locator("h1")).to_contain_text("often@")
    await often.delete()
