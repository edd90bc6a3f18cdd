"""OpenTelemetry spans for starts, workflow tasks, activity attempts and events sent.

``Tracing`` itself does nothing, so tapeflow runs without ``opentelemetry-api`` installed;
``tracing_for`` picks the OpenTelemetry one when it is. Following the global tracer
provider while none is configured, a span is one check of the global (and a carried
context passed on), and no new trace context is stored.

A span's trace context travels as a W3C ``traceparent`` dict (``opentelemetry.propagate``)
in the rows that carry work across processes: a run's start event (so every task of the
run, on any worker, after any crash, is a child of the code that started it) and an
activity task (so each attempt is a child of the workflow task that scheduled it). The
spans are the worker's, never the workflow code's: replaying history emits none.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from tapeflow._validate import fail

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

TraceContext: TypeAlias = dict[str, str]
"""A span's context as the W3C propagator writes it (``traceparent``, ``tracestate``)."""

Kind: TypeAlias = Literal["producer", "consumer", "internal"]
CURRENT: Literal["current"] = "current"
"""Parent of a span made in the caller's code: whatever span is current there."""
Parent: TypeAlias = TraceContext | Literal["current"] | None
"""A carried context, None for a root span (a run started without one), or CURRENT."""


class SpanHandle:
    """The no-op span: it carries no context and ignores its outcome."""

    def __init__(self, carried: TraceContext | None = None) -> None:
        self._carried = carried

    @property
    def carried(self) -> TraceContext | None:
        """Its context, to store with the work it makes (None: nothing to carry)."""
        return self._carried

    def ended(self, outcome: str, error: BaseException | str | None = None) -> None:
        """Name how it ended (``tapeflow.outcome``); ``error`` (recorded, if an exception)
        marks it failed."""


_NO_SPAN = contextlib.nullcontext(SpanHandle())


class Tracing:
    """The no-op: tracing off, or opentelemetry-api not installed."""

    def span(
        self, name: str, kind: Kind, parent: Parent, attributes: Mapping[str, str | int]
    ) -> AbstractContextManager[SpanHandle]:
        """A span around the block; an exception escaping it is recorded as its error."""
        return _NO_SPAN

    def start_workflow(self, workflow: str, workflow_id: str) -> AbstractContextManager[SpanHandle]:
        attributes = {"tapeflow.workflow": workflow, "tapeflow.workflow_id": workflow_id}
        return self.span(f"StartWorkflow:{workflow}", "producer", CURRENT, attributes)

    def send_event(
        self, event: str, workflow_id: str, parent: Parent = CURRENT
    ) -> AbstractContextManager[SpanHandle]:
        attributes = {"tapeflow.event": event, "tapeflow.workflow_id": workflow_id}
        return self.span(f"SendEvent:{event}", "producer", parent, attributes)

    def workflow_task(
        self, workflow: str, workflow_id: str, run_id: str, parent: TraceContext | None
    ) -> AbstractContextManager[SpanHandle]:
        attributes = {
            "tapeflow.workflow": workflow,
            "tapeflow.workflow_id": workflow_id,
            "tapeflow.run_id": run_id,
        }
        return self.span(f"RunWorkflow:{workflow}", "consumer", parent, attributes)

    def activity_attempt(
        self,
        activity: str,
        attempt: int,
        workflow_id: str,
        run_id: str,
        parent: TraceContext | None,
    ) -> AbstractContextManager[SpanHandle]:
        attributes: dict[str, str | int] = {
            "tapeflow.activity": activity,
            "tapeflow.attempt": attempt,
            "tapeflow.workflow_id": workflow_id,
            "tapeflow.run_id": run_id,
        }
        return self.span(f"RunActivity:{activity}", "consumer", parent, attributes)


class OpenTelemetryTracing(Tracing):
    """Spans from ``tracer``; their contexts carried by the globally set propagator (W3C
    trace context unless the application set another)."""

    def __init__(self, tracer: Tracer, follows_global: bool) -> None:
        from opentelemetry import propagate, trace
        from opentelemetry.context import Context

        self._tracer = tracer
        self._follows_global = follows_global
        self._global_provider = trace.get_tracer_provider
        self._unset = trace.ProxyTracerProvider
        self._extract = propagate.extract
        self._root = Context
        self._kinds = {
            "producer": trace.SpanKind.PRODUCER,
            "consumer": trace.SpanKind.CONSUMER,
            "internal": trace.SpanKind.INTERNAL,
        }

    def span(
        self, name: str, kind: Kind, parent: Parent, attributes: Mapping[str, str | int]
    ) -> AbstractContextManager[SpanHandle]:
        if self._follows_global and isinstance(self._global_provider(), self._unset):
            # No provider configured (yet): no span, but a carried parent goes on, so that
            # the next worker's spans, if it has a provider, stay in the trace.
            passing = SpanHandle(parent if isinstance(parent, dict) else None)
            return contextlib.nullcontext(passing)
        return self._span(name, kind, parent, attributes)

    @contextlib.contextmanager
    def _span(
        self, name: str, kind: Kind, parent: Parent, attributes: Mapping[str, str | int]
    ) -> Iterator[SpanHandle]:
        context = None if parent == CURRENT else self._extract(parent or {}, self._root())
        with self._tracer.start_as_current_span(
            name, context, self._kinds[kind], attributes
        ) as span:
            yield _OpenTelemetrySpan(span) if span.get_span_context().is_valid else _UNTRACED


_UNTRACED = SpanHandle()
"""What a span out of any trace gets (no tracer provider configured, no parent): nothing
to carry. (The API's no-op span under a carried parent has the parent's context, passed
on: a worker without a provider does not cut its trace for the next.)"""


class _OpenTelemetrySpan(SpanHandle):
    def __init__(self, span: Span) -> None:
        super().__init__()
        self._span = span

    @property
    def carried(self) -> TraceContext | None:
        """Written when asked for: most spans make no work that carries it."""
        from opentelemetry import propagate, trace

        if self._carried is None:
            carrier: TraceContext = {}
            propagate.inject(carrier, trace.set_span_in_context(self._span))
            self._carried = carrier or None
        return self._carried

    def ended(self, outcome: str, error: BaseException | str | None = None) -> None:
        from opentelemetry.trace import Status, StatusCode

        self._span.set_attribute("tapeflow.outcome", outcome)
        if isinstance(error, BaseException):
            self._span.record_exception(error)
            error = f"{type(error).__name__}: {error}"
        if error is not None:
            self._span.set_status(Status(StatusCode.ERROR, error))


def tracing_for(setting: Any) -> Tracing:
    """The tracing a ``tracing`` option asks for: False none; True the globally configured
    tracer provider's (none without opentelemetry-api: nothing to send spans to); a
    ``TracerProvider`` its own."""
    if setting is False:
        return Tracing()
    try:
        from opentelemetry import trace
    except ImportError:
        return Tracing()
    from tapeflow import __version__

    if setting is True:
        return OpenTelemetryTracing(trace.get_tracer("tapeflow", __version__), True)
    return OpenTelemetryTracing(setting.get_tracer("tapeflow", __version__), False)


def check_tracing(setting: object, what: str) -> None:
    """True, False, or an OpenTelemetry ``TracerProvider``."""
    if isinstance(setting, bool):
        return
    try:
        from opentelemetry.trace import TracerProvider
    except ImportError:
        fail(what, setting, "True or False (a TracerProvider needs opentelemetry-api)")
    if not isinstance(setting, TracerProvider):
        fail(what, setting, "True, False or an opentelemetry TracerProvider")
