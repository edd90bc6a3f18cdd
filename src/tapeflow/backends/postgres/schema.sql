-- The whole current schema, inside the backend's own PostgreSQL schema (default
-- "tapeflow", set through search_path). The numbered migrations must add up to exactly
-- this (tests/backends/test_postgres_schema.py checks it). The functions are in
-- functions.sql, applied after either.

-- One row per run of a workflow id; the latest run of an id has the highest run_number.
-- The rows of a run in the tables below carry its run_id without a foreign key: only the
-- functions of functions.sql write them, each after finding the run (see migration 0008).
CREATE TABLE workflows (
    run_id         text PRIMARY KEY,
    id             text NOT NULL,
    run_number     integer NOT NULL,
    name           text NOT NULL,
    version        text NOT NULL,
    status         text NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'failed',
                                                   'cancelled', 'terminated', 'timed_out',
                                                   'continued_as_new')),
    args           json NOT NULL,
    result         json,
    failure        json,
    created_at     timestamptz NOT NULL DEFAULT now(),
    start_at       timestamptz NOT NULL,
    completed_at   timestamptz,
    parent_id      text,
    history_length integer NOT NULL DEFAULT 0,
    stop_reason    text,
    stop_requested_by text,
    -- A child's parent: the run it reports its end to, the seq of the decision that
    -- started it there, and the inbox event (JSON text) it gets if that run closes first.
    parent_run_id  text,
    parent_seq     integer,
    on_parent_close text,
    -- The variables the workflow set (workflow.set_var) as of its last commit.
    vars           jsonb,
    -- The queue it was started on, and its priority there (1 first).
    queue          text NOT NULL DEFAULT 'default',
    priority       smallint NOT NULL DEFAULT 5,
    UNIQUE (id, run_number)
);
CREATE INDEX workflows_by_parent ON workflows (parent_run_id) WHERE parent_run_id IS NOT NULL;
-- Runs by when they ended: retention finds the workflows closed long ago.
CREATE INDEX workflows_closed ON workflows (completed_at) WHERE completed_at IS NOT NULL;
CREATE INDEX workflows_by_created ON workflows (created_at, run_id);
CREATE INDEX workflows_by_status ON workflows (status, created_at, run_id);
CREATE INDEX workflows_by_name ON workflows (name, created_at, run_id);
CREATE INDEX workflows_by_id_prefix ON workflows (id COLLATE "C");
CREATE INDEX workflows_by_vars ON workflows USING gin (vars jsonb_path_ops);

-- One per unfinished run: claimable while its inbox has a visible event.
CREATE TABLE workflow_tasks (
    run_id           text PRIMARY KEY,
    name             text NOT NULL,
    lease_owner      text,
    lease_token      bigint NOT NULL DEFAULT 0,
    lease_expires_at timestamptz,
    not_before       timestamptz NOT NULL DEFAULT '-infinity',
    failures         integer NOT NULL DEFAULT 0,
    last_error       text,
    -- The worker that committed the last task, and so holds the workflow's instance: the
    -- next task waits a moment for it before any other worker may claim it.
    sticky_owner     text,
    -- Its run's queue and priority; while not admitted (a queue with limits has no room for
    -- it yet) no claim sees it.
    queue            text NOT NULL DEFAULT 'default',
    priority         smallint NOT NULL DEFAULT 5,
    admitted         boolean NOT NULL DEFAULT true
);
CREATE INDEX workflow_tasks_by_name ON workflow_tasks (name) WHERE admitted;
CREATE INDEX workflow_tasks_in_queue ON workflow_tasks (queue, admitted, priority)
    WHERE queue <> 'default';

-- Things that happened that the run has not seen yet; timers wait here until due.
CREATE TABLE inbox (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id     text NOT NULL,
    visible_at timestamptz NOT NULL,
    timer_seq  integer,
    event      json NOT NULL
);
CREATE INDEX inbox_by_run ON inbox (run_id, visible_at);
CREATE INDEX inbox_by_time ON inbox (visible_at);

CREATE TABLE activity_tasks (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id            text NOT NULL,
    seq               integer NOT NULL,
    name              text NOT NULL,
    args              json NOT NULL,
    retry             json,
    attempt           integer NOT NULL DEFAULT 0,
    visible_at        timestamptz NOT NULL,
    lease_owner       text,
    lease_token       bigint NOT NULL DEFAULT 0,
    lease_expires_at  timestamptz,
    last_failure      json,
    heartbeat_details json,
    timeouts         json,
    -- Its queue and priority; while not admitted no claim sees it (see workflow_tasks).
    queue            text NOT NULL DEFAULT 'default',
    priority         smallint NOT NULL DEFAULT 5,
    admitted         boolean NOT NULL DEFAULT true,
    trace_context    json,  -- the W3C trace context of the task that scheduled it
    UNIQUE (run_id, seq)
);
CREATE INDEX activity_tasks_ready ON activity_tasks (name, visible_at) WHERE admitted;
CREATE INDEX activity_tasks_in_queue ON activity_tasks (queue, admitted, priority, visible_at)
    WHERE queue <> 'default';

-- The tape: append-only, numbered per run from 1.
CREATE TABLE history (
    run_id text NOT NULL,
    seq    integer NOT NULL,
    event  json NOT NULL,
    PRIMARY KEY (run_id, seq)
);

-- The checksum of the functions.sql applied to this schema (see functions.sql).
CREATE TABLE schema_functions (revision integer NOT NULL, checksum text NOT NULL);

-- When workers last claimed each workflow and activity name (a claim records it at most
-- every few seconds): a workflow no live worker runs says so.
CREATE TABLE pollers (
    kind         text NOT NULL,
    name         text NOT NULL,
    last_poll_at timestamptz NOT NULL,
    PRIMARY KEY (kind, name)
);

-- The workers that run, what each runs (tapeflow.backends.presence.WorkerInfo), when each
-- started, was last heard from, and said it stopped.
CREATE TABLE workers (
    id           text PRIMARY KEY,
    info         jsonb NOT NULL,
    started_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    stopped_at   timestamptz
);

-- The idempotency keys of the events sent to each workflow id, kept for as long as the id,
-- across its runs: a send with a key the id has had delivers nothing.
CREATE TABLE event_keys (
    workflow_id text NOT NULL,
    key         text NOT NULL,
    PRIMARY KEY (workflow_id, key)
);

-- Each update sent to a workflow id, kept for as long as the id, across its runs: the run
-- its request went to, and its answer (an UpdateCompleted or UpdateRejected), NULL until
-- the commit that decides it stores it. A request with an update id the workflow id has
-- had delivers nothing.
CREATE TABLE updates (
    workflow_id text NOT NULL,
    update_id   text NOT NULL,
    run_id      text NOT NULL,
    outcome     json,
    PRIMARY KEY (workflow_id, update_id)
);

-- The queues declared with limits (tapeflow.Queue): at most concurrency of the queue's
-- tasks admitted at once, at most rate_limit admitted per rate_period.
CREATE TABLE queues (
    name        text PRIMARY KEY,
    concurrency integer,
    rate_limit  integer,
    rate_period interval,
    declared_at timestamptz NOT NULL DEFAULT now()
);

-- When each queue admitted its tasks lately: its rate limit counts those within the period.
CREATE TABLE queue_starts (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue      text NOT NULL,
    started_at timestamptz NOT NULL
);
CREATE INDEX queue_starts_by_queue ON queue_starts (queue, started_at);

-- Schedules (tapeflow.backends.schedules): a cadence (a cron expression read in the time
-- zone, or an interval "every"), the overlap policy and the catch-up window, and the next
-- due time, which the firing loop advances in the transaction that starts the due
-- workflows; buffered_at is a due time kept by overlap "buffer_one".
CREATE TABLE schedules (
    id              text PRIMARY KEY,
    workflow_name   text NOT NULL,
    args            json NOT NULL,
    cron            text,
    every           interval,
    timezone        text NOT NULL,
    overlap         text NOT NULL CHECK (overlap IN ('skip', 'buffer_one', 'allow_all',
                                                     'cancel_other')),
    catchup_window  interval NOT NULL,
    paused          boolean NOT NULL DEFAULT false,
    next_due_at     timestamptz NOT NULL,
    buffered_at     timestamptz,
    skipped_catchup integer NOT NULL DEFAULT 0,
    skipped_overlap integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((cron IS NULL) <> (every IS NULL))
);
CREATE INDEX schedules_due ON schedules (workflow_name, next_due_at) WHERE NOT paused;

-- The workflows each schedule started, for what it was due: the open ones (the overlap
-- policy looks at them) and the last few.
CREATE TABLE schedule_runs (
    schedule_id text NOT NULL,
    workflow_id text NOT NULL,
    due_at      timestamptz NOT NULL,
    started_at  timestamptz NOT NULL,
    PRIMARY KEY (schedule_id, workflow_id)
);
