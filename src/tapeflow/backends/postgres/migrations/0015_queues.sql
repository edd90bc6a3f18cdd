-- 0015: queues. Every run and task is in a queue ('default' if none); a worker claims only
-- from the queues it serves. A queue with limits (its row in queues) admits its tasks: a
-- task waits unadmitted (no claim sees it) until a worker's admission finds room under the
-- queue's concurrency (admitted tasks of the queue) and rate (admissions in queue_starts
-- within the period), its waiting tasks taken by priority, then time.
ALTER TABLE workflows ADD COLUMN queue text NOT NULL DEFAULT 'default',
    ADD COLUMN priority smallint NOT NULL DEFAULT 5;
ALTER TABLE workflow_tasks ADD COLUMN queue text NOT NULL DEFAULT 'default',
    ADD COLUMN priority smallint NOT NULL DEFAULT 5,
    ADD COLUMN admitted boolean NOT NULL DEFAULT true;
ALTER TABLE activity_tasks ADD COLUMN queue text NOT NULL DEFAULT 'default',
    ADD COLUMN priority smallint NOT NULL DEFAULT 5,
    ADD COLUMN admitted boolean NOT NULL DEFAULT true;
DROP INDEX workflow_tasks_by_name;
CREATE INDEX workflow_tasks_by_name ON workflow_tasks (name) WHERE admitted;
CREATE INDEX workflow_tasks_in_queue ON workflow_tasks (queue, admitted, priority)
    WHERE queue <> 'default';
DROP INDEX activity_tasks_ready;
CREATE INDEX activity_tasks_ready ON activity_tasks (name, visible_at) WHERE admitted;
CREATE INDEX activity_tasks_in_queue ON activity_tasks (queue, admitted, priority, visible_at)
    WHERE queue <> 'default';
CREATE TABLE queues (
    name        text PRIMARY KEY,
    concurrency integer,
    rate_limit  integer,
    rate_period interval,
    declared_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE queue_starts (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue      text NOT NULL,
    started_at timestamptz NOT NULL
);
CREATE INDEX queue_starts_by_queue ON queue_starts (queue, started_at);
