-- 0012: queues. Every run and task is in a queue ('default' if none); a worker claims only
-- from the queues it serves. A queue with limits (its row in queues) admits its tasks: a
-- task waits unadmitted (admitted = 0: no claim sees it) until a worker's admission finds
-- room under the queue's concurrency (admitted tasks of the queue) and rate (admissions in
-- queue_starts within the period), its waiting tasks taken by priority, then time.
ALTER TABLE workflows ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';
ALTER TABLE workflows ADD COLUMN priority INTEGER NOT NULL DEFAULT 5;
ALTER TABLE workflow_tasks ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';
ALTER TABLE workflow_tasks ADD COLUMN priority INTEGER NOT NULL DEFAULT 5;
ALTER TABLE workflow_tasks ADD COLUMN admitted INTEGER NOT NULL DEFAULT 1;
ALTER TABLE activity_tasks ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';
ALTER TABLE activity_tasks ADD COLUMN priority INTEGER NOT NULL DEFAULT 5;
ALTER TABLE activity_tasks ADD COLUMN admitted INTEGER NOT NULL DEFAULT 1;
DROP INDEX workflow_tasks_by_name;
CREATE INDEX workflow_tasks_by_name ON workflow_tasks (name) WHERE admitted;
CREATE INDEX workflow_tasks_in_queue ON workflow_tasks (queue, admitted, priority)
    WHERE queue <> 'default';
DROP INDEX activity_tasks_ready;
CREATE INDEX activity_tasks_ready ON activity_tasks (name, visible_at) WHERE admitted;
CREATE INDEX activity_tasks_in_queue ON activity_tasks (queue, admitted, priority, visible_at)
    WHERE queue <> 'default';
CREATE TABLE queues (
    name        TEXT PRIMARY KEY,
    concurrency INTEGER,
    rate_limit  INTEGER,
    rate_period INTEGER,
    declared_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE queue_starts (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    queue      TEXT NOT NULL,
    started_at INTEGER NOT NULL
);
CREATE INDEX queue_starts_by_queue ON queue_starts (queue, started_at);
