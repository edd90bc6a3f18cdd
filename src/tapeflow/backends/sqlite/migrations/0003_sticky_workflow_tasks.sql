-- 0003: a workflow task goes first to the worker that committed the last one (it holds the
-- workflow's instance); others may take it once its event has waited a moment.

ALTER TABLE workflow_tasks ADD COLUMN sticky_owner TEXT;
