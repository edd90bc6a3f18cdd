"""How ``tapeflow worker`` logs: text for people, or one JSON object per line for a log
pipeline, whose worker records carry the task's fields (``tapeflow._worker.log_context``)."""

from __future__ import annotations

import enum
import logging

from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class LogFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"


def configure_logging(level: int, form: LogFormat) -> None:
    """Log to stderr at ``level``, in ``form``."""
    handler = logging.StreamHandler()
    if form is LogFormat.JSON:
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"levelname": "level", "asctime": "time", "name": "logger"},
                timestamp=False,
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
