-- 0017: schedules (tapeflow.backends.schedules). A schedule is its cadence (a cron
-- expression read in its time zone, or an interval "every"), its policies and its next due
-- time; the firing loops of the workers that run its workflow lock due rows FOR UPDATE
-- SKIP LOCKED, start what is due and store the next due time in one transaction.
-- schedule_runs records the workflows it started: the open ones, and the last few.
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
CREATE TABLE schedule_runs (
    schedule_id text NOT NULL,
    workflow_id text NOT NULL,
    due_at      timestamptz NOT NULL,
    started_at  timestamptz NOT NULL,
    PRIMARY KEY (schedule_id, workflow_id)
);
