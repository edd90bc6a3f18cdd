"""``workflow.logger``: logging from workflow code that a replay does not repeat."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

from tapeflow._engine.instance import running_instance


class WorkflowLogger(logging.LoggerAdapter[logging.Logger]):
    """A ``logging.LoggerAdapter`` for workflow code.

    Replayed code already logged when it first ran, so while the workflow replays every
    level is disabled; so it is while a closed instance's code is ended (evicted: the
    workflow goes on elsewhere, and logs there). Each record gets ``workflow_id``, ``run``
    and ``workflow_name`` (``extra``, usable as ``%(workflow_id)s`` in a format); outside
    workflow code it logs as its plain logger, without them."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logger, {})

    def isEnabledFor(self, level: int) -> bool:
        instance = running_instance()
        quiet = instance is not None and (instance.loop.is_closed() or instance.info.is_replaying)
        return not quiet and self.logger.isEnabledFor(level)

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        instance = running_instance()
        if instance is not None:
            info = instance.info
            fields = {
                "workflow_id": info.workflow_id,
                "run": info.run_id,
                "workflow_name": info.name,
            }
            kwargs["extra"] = {**fields, **(kwargs.get("extra") or {})}
        return msg, kwargs
