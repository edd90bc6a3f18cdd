-- 0004: wake-ups leave the durable transactions, batches are read in one pass, the worker
-- that ran an activity can commit the workflow's next task with its outcome, and a
-- workflow task goes first to the worker that holds the workflow's instance.
--
-- A transaction that sends NOTIFY holds a database-wide lock through its commit's WAL flush,
-- so notifying commits go one at a time. The functions now say whom to wake, and the caller
-- sends the NOTIFYs after the commit, in a transaction of their own that writes nothing.
-- (The functions themselves are in functions.sql; a database at version 3 drops the old
-- ones here.)

DROP FUNCTION IF EXISTS commit_workflow_tasks(json);
DROP FUNCTION IF EXISTS commit_workflow_task(
    text, bigint, integer, bigint[], text[], integer[], text[], text[], text[],
    timestamptz[], integer[], text[], integer[], text, text, text, text, text[], integer[],
    text, interval);
DROP FUNCTION IF EXISTS complete_activity_tasks(json);

ALTER TABLE workflow_tasks ADD COLUMN sticky_owner text;

-- One workflow task's commit, as the worker sends it.
CREATE TYPE workflow_commit AS (
    id               text,
    token            bigint,
    history_length   integer,
    consumed         bigint[],
    events           text[],
    activity_seqs    integer[],
    activity_names   text[],
    activity_args    text[],
    activity_retries text[],
    timer_dues       timestamptz[],
    timer_seqs       integer[],
    timer_events     text[],
    cancelled_timers integer[],
    status           text,
    result           text,
    failure          text,
    eager_seqs       integer[],
    owner            text,
    lease            interval
);
