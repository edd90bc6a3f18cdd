-- 0014: schedules (tapeflow.backends.schedules). A schedule is its cadence (a cron
-- expression read in its time zone, or an interval "every", microseconds), its policies and
-- its next due time; the firing loops of the workers that run its workflow start what is
-- due and store the next due time in one transaction. schedule_runs records the workflows
-- it started: the open ones, and the last few.
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
CREATE TABLE schedule_runs (
    schedule_id TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    due_at      INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    PRIMARY KEY (schedule_id, workflow_id)
) WITHOUT ROWID;
