"""When a schedule is due: a cron expression in a time zone, or a fixed interval.

Cron expressions are evaluated by cronsim (the parser Healthchecks is built on), which
matches Debian's cron, DST included: a job at a specific time that falls into the hour
skipped in spring runs at the moment the clocks jump (02:30 Europe/Berlin on the day of the
change runs at 03:00 CEST), and one in the hour repeated in autumn runs once, at its first
occurrence; expressions whose minute or hour field starts with ``*`` run by the clock as
it is, so every half hour means every 30 minutes of real time across either change.

Intervals are counted from the Unix epoch in UTC: ``every=timedelta(minutes=5)`` is due at
:00, :05, :10 of every hour whatever the time zone, and two schedules of one interval are
due together. Every time here is a tz-aware UTC datetime unless it says otherwise.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from tapeflow.errors import InvalidArgument

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

NEVER = datetime(9999, 12, 31, tzinfo=UTC)
"""The next due time of a cadence that has none left (a cron expression cronsim finds no
match for within 50 years): both backends can store it, and it never comes."""

MIN_EVERY = timedelta(milliseconds=100)
"""The shortest interval taken: shorter ones are typing mistakes, and would start a
workflow faster than a worker can fire them."""

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
"""The macros of Vixie cron, which cronsim does not read."""

COUNT_LIMIT = 100_000
"""Due times of a cron expression counted one by one when a catch-up skips them; past this
many (a per-second expression after a day down) the rest are jumped over, uncounted."""


def zone(name: object) -> ZoneInfo:
    """The IANA time zone ``name`` (``"Europe/Berlin"``, ``"UTC"``). Raises InvalidArgument."""
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"timezone must be an IANA time zone name, got {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidArgument(
            f"timezone {name!r} is not a time zone this machine knows (an IANA name such "
            "as 'Europe/Berlin'; on a system without tz data, pip install tzdata)"
        ) from None


class Cadence:
    """The due times of a cron expression in ``timezone``, or of an interval ``every``.

    Built from checked values (``ScheduleSpec`` checks them); ``check_cron`` and ``zone``
    say what is wrong with a bad one."""

    def __init__(self, cron: str | None, every: timedelta | None, timezone: str) -> None:
        assert (cron is None) != (every is None)
        self._cron = None if cron is None else MACROS.get(cron.strip().lower(), cron)
        self._every = None if every is None else _micros(every)
        self._zone = zone(timezone)

    def after(self, moment: datetime) -> datetime:
        """The first due time strictly after ``moment``."""
        return next(self._from(moment))

    def upcoming(self, first: datetime, count: int) -> list[datetime]:
        """``first`` (a due time) and the due times after it, ``count`` in all; fewer if it
        ends."""
        found = [] if first >= NEVER else [first]
        for moment in self._from(first):
            if len(found) >= count or moment >= NEVER:
                break
            found.append(moment)
        return found[:count]

    def due(
        self, first: datetime, now: datetime, window: timedelta, keep: int
    ) -> tuple[int, list[datetime], datetime]:
        """The due times from ``first`` (itself one, and due: ``first <= now``) up to ``now``:
        how many are older than ``now - window`` (too late to start), the others in order
        (at most ``keep``, the latest: any more are counted as too late), and the first due
        time after ``now``."""
        start = now - window
        if self._every is not None:  # counted, not walked: an interval's times are regular
            step, since = self._every, _micros(first - EPOCH)
            total = (_micros(now - EPOCH) - since) // step + 1
            late = min(total, max(0, -(-(_micros(start - EPOCH) - since) // step)))
            kept = range(max(late, total - keep), total)
            on_time = [first + timedelta(microseconds=step * n) for n in kept]
            following = first + timedelta(microseconds=step * total)
            return late + (total - late - len(on_time)), on_time, following
        late, moment, times = 0, first, self._from(first)
        while moment < start and late < COUNT_LIMIT:
            late, moment = late + 1, next(times)
        if moment < start:  # too many to count: jump to the first one not too late
            times = self._from(start - timedelta(microseconds=1))
            moment = next(times)
        seen, latest = 0, collections.deque[datetime](maxlen=keep)
        while moment <= now:
            seen += 1
            latest.append(moment)
            moment = next(times)
        return late + seen - len(latest), list(latest), moment

    def _from(self, moment: datetime) -> Iterator[datetime]:
        """The due times strictly after ``moment``, then ``NEVER`` for ever."""
        if self._every is not None:
            step = self._every
            n = _micros(moment - EPOCH) // step + 1
            while True:
                yield EPOCH + timedelta(microseconds=step * n)
                n += 1
        assert self._cron is not None
        for local in CronSim(self._cron, moment.astimezone(self._zone)):
            yield local.astimezone(UTC)
        while True:  # cronsim found no match within 50 years
            yield NEVER


def check_cron(expression: object) -> str:
    """A cron expression of five fields (minute hour day-of-month month day-of-week), or six
    with seconds first, or a macro (``@daily``); returned as given. Raises InvalidArgument
    naming what cronsim found wrong, or that it never comes due."""
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidArgument(f"cron must be a cron expression, got {expression!r}")
    read = MACROS.get(expression.strip().lower(), expression)
    try:
        times = CronSim(read, datetime.now(UTC))
        next(times)
    except CronSimError as exc:
        raise InvalidArgument(
            f"cron {expression!r} is not a cron expression: {exc} (five fields: minute hour "
            "day-of-month month day-of-week, or six with seconds first)"
        ) from None
    except StopIteration:
        raise InvalidArgument(f"cron {expression!r} never comes due") from None
    return expression


def _micros(span: timedelta) -> int:
    return (span.days * 86_400 + span.seconds) * 1_000_000 + span.microseconds
