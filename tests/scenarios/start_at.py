"""A workflow scheduled to start later reports when it was due and when it first ran."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tapeflow import workflow


@dataclass(frozen=True)
class StartReport:
    started_at: datetime
    first_ran_at: datetime


@workflow.defn
async def report_start() -> StartReport:
    workflow.set_var("ran", True)
    return StartReport(started_at=workflow.info().started_at, first_ran_at=workflow.now())
