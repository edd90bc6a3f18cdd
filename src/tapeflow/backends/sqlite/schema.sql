-- The whole current schema. The numbered migrations must add up to exactly this
-- (tests/backends/test_sqlite_schema.py checks it).
-- Times are integer microseconds since the Unix epoch, UTC.

-- A workflow id has one or more runs, numbered from 1; the latest is the highest. History,
-- tasks and inbox belong to a run.
CREATE TABLE workflows (
    run_id         TEXT PRIMARY KEY,
    id             TEXT NOT NULL,
    run_number     INTEGER NOT NULL,
    name           TEXT NOT NULL,
    version        TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'failed',
                                                   'cancelled', 'terminated', 'timed_out',
                                                   'continued_as_new')),
    args           TEXT NOT NULL,
    result         TEXT,
    failure        TEXT,
    created_at     INTEGER NOT NULL,
    start_at       INTEGER NOT NULL,
    completed_at   INTEGER,
    parent_id      TEXT,
    history_length INTEGER NOT NULL DEFAULT 0,
    stop_reason    TEXT,
    stop_requested_by TEXT,
    -- A child's parent: the run it reports its end to, the seq of the decision that
    -- started it there, and the inbox event it gets if that run closes first.
    parent_run_id  TEXT,
    parent_seq     INTEGER,
    on_parent_close TEXT,
    -- The variables the workflow set (workflow.set_var) as of its last commit.
    vars           TEXT,
    -- The queue it was started on, and its priority there (1 first).
    queue          TEXT NOT NULL DEFAULT 'default',
    priority       INTEGER NOT NULL DEFAULT 5,
    UNIQUE (id, run_number)
);
CREATE INDEX workflows_by_parent ON workflows (parent_run_id) WHERE parent_run_id IS NOT NULL;
-- Runs by when they ended: retention finds the workflows closed long ago.
CREATE INDEX workflows_closed ON workflows (completed_at) WHERE completed_at IS NOT NULL;
CREATE INDEX workflows_by_created ON workflows (created_at, run_id);
CREATE INDEX workflows_by_status ON workflows (status, created_at, run_id);
CREATE INDEX workflows_by_name ON workflows (name, created_at, run_id);

-- One per unfinished run: claimable while its inbox has a visible event.
CREATE TABLE workflow_tasks (
    run_id           TEXT PRIMARY KEY REFERENCES workflows (run_id),
    name             TEXT NOT NULL,
    lease_owner      TEXT,
    lease_token      INTEGER NOT NULL DEFAULT 0,
    lease_expires_at INTEGER,
    not_before       INTEGER NOT NULL DEFAULT 0,
    failures         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    -- The worker that committed the last task and took the next (HandOffs), and so holds
    -- the run's instance: the next task waits a moment for it before another may claim it.
    sticky_owner     TEXT,
    -- Its run's queue and priority; while not admitted (a queue with limits has no room for
    -- it yet) no claim sees it.
    queue            TEXT NOT NULL DEFAULT 'default',
    priority         INTEGER NOT NULL DEFAULT 5,
    admitted         INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX workflow_tasks_by_name ON workflow_tasks (name) WHERE admitted;
CREATE INDEX workflow_tasks_in_queue ON workflow_tasks (queue, admitted, priority)
    WHERE queue <> 'default';

-- Things that happened that the run has not seen yet; timers wait here until due.
CREATE TABLE inbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      TEXT NOT NULL REFERENCES workflows (run_id),
    visible_at  INTEGER NOT NULL,
    timer_seq   INTEGER,
    event       TEXT NOT NULL
);
CREATE INDEX inbox_by_run ON inbox (run_id, visible_at);
CREATE INDEX inbox_by_time ON inbox (visible_at);

CREATE TABLE activity_tasks (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id           TEXT NOT NULL REFERENCES workflows (run_id),
    seq              INTEGER NOT NULL,
    name             TEXT NOT NULL,
    args             TEXT NOT NULL,
    retry            TEXT,
    attempt          INTEGER NOT NULL DEFAULT 0,
    visible_at       INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_token      INTEGER NOT NULL DEFAULT 0,
    lease_expires_at INTEGER,
    last_failure     TEXT,
    heartbeat_details TEXT,
    timeouts         TEXT,
    -- Its queue and priority; while not admitted no claim sees it (see workflow_tasks).
    queue            TEXT NOT NULL DEFAULT 'default',
    priority         INTEGER NOT NULL DEFAULT 5,
    admitted         INTEGER NOT NULL DEFAULT 1,
    trace_context    TEXT,  -- JSON: the W3C trace context of the task that scheduled it
    UNIQUE (run_id, seq)
);
CREATE INDEX activity_tasks_ready ON activity_tasks (name, visible_at) WHERE admitted;
CREATE INDEX activity_tasks_in_queue ON activity_tasks (queue, admitted, priority, visible_at)
    WHERE queue <> 'default';

-- The tape: append-only, numbered per run from 1.
CREATE TABLE history (
    run_id      TEXT NOT NULL REFERENCES workflows (run_id),
    seq         INTEGER NOT NULL,
    event       TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;

-- When workers last claimed each workflow and activity name (a claim records it at most
-- every few seconds): a workflow no live worker runs says so.
CREATE TABLE pollers (
    kind         TEXT NOT NULL,
    name         TEXT NOT NULL,
    last_poll_at INTEGER NOT NULL,
    PRIMARY KEY (kind, name)
) WITHOUT ROWID;

-- The workers that run, what each runs (JSON: tapeflow.backends.presence.WorkerInfo), when
-- each started, was last heard from, and said it stopped.
CREATE TABLE workers (
    id           TEXT PRIMARY KEY,
    info         TEXT NOT NULL,
    started_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    stopped_at   INTEGER
) WITHOUT ROWID;

-- The idempotency keys of the events sent to each workflow id, kept for as long as the id,
-- across its runs: a send with a key the id has had delivers nothing.
CREATE TABLE event_keys (
    workflow_id TEXT NOT NULL,
    key         TEXT NOT NULL,
    PRIMARY KEY (workflow_id, key)
) WITHOUT ROWID;

-- Each update sent to a workflow id, kept for as long as the id, across its runs: the run
-- its request went to, and its answer (an encoded UpdateCompleted or UpdateRejected), NULL
-- until the commit that decides it stores it. A request with an update id the workflow id
-- has had delivers nothing.
CREATE TABLE updates (
    workflow_id TEXT NOT NULL,
    update_id   TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    outcome     TEXT,
    PRIMARY KEY (workflow_id, update_id)
) WITHOUT ROWID;

-- The queues declared with limits (tapeflow.Queue): at most concurrency of the queue's
-- tasks admitted at once, at most rate_limit admitted per rate_period (microseconds).
CREATE TABLE queues (
    name        TEXT PRIMARY KEY,
    concurrency INTEGER,
    rate_limit  INTEGER,
    rate_period INTEGER,
    declared_at INTEGER NOT NULL
) WITHOUT ROWID;

-- When each queue admitted its tasks lately: its rate limit counts those within the period.
CREATE TABLE queue_starts (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    queue      TEXT NOT NULL,
    started_at INTEGER NOT NULL
);
CREATE INDEX queue_starts_by_queue ON queue_starts (queue, started_at);

-- Schedules (tapeflow.backends.schedules): a cadence (a cron expression read in the time
-- zone, or an interval "every", microseconds), the overlap policy and the catch-up window
-- (microseconds), and the next due time, which the firing loop advances in the transaction
-- that starts the due workflows; buffered_at is a due time kept by overlap "buffer_one".
CREATE TABLE schedules (
    id              TEXT PRIMARY KEY,
    workflow_name   TEXT NOT NULL,
    args            TEXT NOT NULL,
    cron            TEXT,
    every           INTEGER,
    timezone        TEXT NOT NULL,
    overlap         TEXT NOT NULL,
    catchup_window  INTEGER NOT NULL,
    paused          INTEGER NOT NULL DEFAULT 0,
    next_due_at     INTEGER NOT NULL,
    buffered_at     INTEGER,
    skipped_catchup INTEGER NOT NULL DEFAULT 0,
    skipped_overlap INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX schedules_due ON schedules (workflow_name, next_due_at) WHERE NOT paused;

-- The workflows each schedule started, for what it was due: the open ones (the overlap
-- policy looks at them) and the last few.
CREATE TABLE schedule_runs (
    schedule_id TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    due_at      INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    PRIMARY KEY (schedule_id, workflow_id)
) WITHOUT ROWID;
