-- 0015: an activity task's trace context (JSON, the W3C propagator's fields): the span of
-- the workflow task that scheduled it, parent of each attempt's span (tapeflow._tracing).
ALTER TABLE activity_tasks ADD COLUMN trace_context TEXT;
