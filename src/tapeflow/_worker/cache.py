"""Live workflow instances kept between tasks ("sticky"), so a task feeds only new events."""

from __future__ import annotations

from collections import OrderedDict

from tapeflow._engine.instance import WorkflowInstance


class WorkflowCache:
    """A bounded LRU of instances, keyed by run id and valid for one history length.

    An instance is handed out only to a task whose history is exactly as long as what the
    instance has seen; anything else (another worker moved it on, a failed commit) is a
    miss and the workflow is replayed from its history.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._instances: OrderedDict[str, WorkflowInstance] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def take(self, run_id: str, history_length: int) -> WorkflowInstance | None:
        instance = self._instances.pop(run_id, None)
        if instance is not None and instance.history_length == history_length:
            self.hits += 1
            return instance
        if instance is not None:
            instance.close()
        self.misses += 1
        return None

    def take_latest(self, run_id: str) -> WorkflowInstance | None:
        """The instance, however long its history: for running a task ahead of the backend,
        whose commit then checks that the history has not moved on."""
        instance = self._instances.pop(run_id, None)
        if instance is not None:
            self.hits += 1
        return instance

    def put(self, instance: WorkflowInstance) -> None:
        if self._size == 0 or instance.finished:
            instance.close()
            return
        self._instances[instance.run_id] = instance
        while len(self._instances) > self._size:
            _, evicted = self._instances.popitem(last=False)
            evicted.close()

    def clear(self) -> None:
        for instance in self._instances.values():
            instance.close()
        self._instances.clear()

    def __len__(self) -> int:
        return len(self._instances)
