"""``async with backend:`` for every backend: open on entry, close on exit."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class OpensAndCloses:
    """Implement ``open`` and ``close``; the context manager is this."""

    async def open(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
