-- 0007: runs in the key. A workflow id has one or more runs; history, tasks and inbox
-- belong to a run (run_id), and the latest run of an id has the highest run_number. Each
-- existing workflow becomes its first run, and every row of it follows it. Commits now
-- reach the database as one JSON plan, so the composite type workflow_commit goes.
--
-- The tables are made anew (their key columns come first, as in schema.sql): the old rows
-- wait in temporary tables meanwhile, so that the new tables, indexes and constraints take
-- the names schema.sql gives them.

-- The type cannot go while a function takes it; the functions themselves are replaced by
-- functions.sql, applied after the migrations.
DROP FUNCTION IF EXISTS commit_workflow_task(workflow_commit);
DROP TYPE workflow_commit;

CREATE TEMPORARY TABLE old_runs ON COMMIT DROP AS
SELECT gen_random_uuid()::text AS run_id, w.* FROM workflows w;
CREATE TEMPORARY TABLE old_workflow_tasks ON COMMIT DROP AS SELECT * FROM workflow_tasks;
CREATE TEMPORARY TABLE old_inbox ON COMMIT DROP AS SELECT * FROM inbox;
CREATE TEMPORARY TABLE old_activity_tasks ON COMMIT DROP AS SELECT * FROM activity_tasks;
CREATE TEMPORARY TABLE old_history ON COMMIT DROP AS SELECT * FROM history;

DROP TABLE history, activity_tasks, inbox, workflow_tasks, workflows;

CREATE TABLE workflows (
    run_id         text PRIMARY KEY,
    id             text NOT NULL,
    run_number     integer NOT NULL,
    name           text NOT NULL,
    version        text NOT NULL,
    status         text NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'failed',
                                                   'cancelled', 'terminated', 'timed_out',
                                                   'continued')),
    args           json NOT NULL,
    result         json,
    failure        json,
    created_at     timestamptz NOT NULL DEFAULT now(),
    start_at       timestamptz NOT NULL,
    completed_at   timestamptz,
    parent_id      text,
    history_length integer NOT NULL DEFAULT 0,
    UNIQUE (id, run_number)
);

CREATE TABLE workflow_tasks (
    run_id           text PRIMARY KEY REFERENCES workflows (run_id),
    name             text NOT NULL,
    lease_owner      text,
    lease_token      bigint NOT NULL DEFAULT 0,
    lease_expires_at timestamptz,
    not_before       timestamptz NOT NULL DEFAULT '-infinity',
    failures         integer NOT NULL DEFAULT 0,
    last_error       text,
    sticky_owner     text
);
CREATE INDEX workflow_tasks_by_name ON workflow_tasks (name);

CREATE TABLE inbox (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id     text NOT NULL REFERENCES workflows (run_id),
    visible_at timestamptz NOT NULL,
    timer_seq  integer,
    event      json NOT NULL
);
CREATE INDEX inbox_by_run ON inbox (run_id, visible_at);
CREATE INDEX inbox_by_time ON inbox (visible_at);

CREATE TABLE activity_tasks (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id            text NOT NULL REFERENCES workflows (run_id),
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
    UNIQUE (run_id, seq)
);
CREATE INDEX activity_tasks_ready ON activity_tasks (name, visible_at);

CREATE TABLE history (
    run_id text NOT NULL REFERENCES workflows (run_id),
    seq    integer NOT NULL,
    event  json NOT NULL,
    PRIMARY KEY (run_id, seq)
);

INSERT INTO workflows (run_id, id, run_number, name, version, status, args, result, failure,
                       created_at, start_at, completed_at, parent_id, history_length)
SELECT run_id, id, 1, name, version, status, args, result, failure, created_at, start_at,
       completed_at, parent_id, history_length
FROM old_runs;

INSERT INTO workflow_tasks (run_id, name, lease_owner, lease_token, lease_expires_at,
                            not_before, failures, last_error, sticky_owner)
SELECT r.run_id, t.name, t.lease_owner, t.lease_token, t.lease_expires_at, t.not_before,
       t.failures, t.last_error, t.sticky_owner
FROM old_workflow_tasks t JOIN old_runs r ON r.id = t.workflow_id;

-- Row ids are kept (a running worker's leases name activity tasks by id), and the
-- identities go on after the highest.
INSERT INTO inbox (id, run_id, visible_at, timer_seq, event) OVERRIDING SYSTEM VALUE
SELECT e.id, r.run_id, e.visible_at, e.timer_seq, e.event
FROM old_inbox e JOIN old_runs r ON r.id = e.workflow_id;
SELECT setval(pg_get_serial_sequence('inbox', 'id'), max(id)) FROM inbox HAVING count(*) > 0;

INSERT INTO activity_tasks (id, run_id, seq, name, args, retry, attempt, visible_at,
                            lease_owner, lease_token, lease_expires_at, last_failure,
                            heartbeat_details) OVERRIDING SYSTEM VALUE
SELECT a.id, r.run_id, a.seq, a.name, a.args, a.retry, a.attempt, a.visible_at,
       a.lease_owner, a.lease_token, a.lease_expires_at, a.last_failure, a.heartbeat_details
FROM old_activity_tasks a JOIN old_runs r ON r.id = a.workflow_id;
SELECT setval(pg_get_serial_sequence('activity_tasks', 'id'), max(id))
FROM activity_tasks HAVING count(*) > 0;

INSERT INTO history (run_id, seq, event)
SELECT r.run_id, h.seq, h.event
FROM old_history h JOIN old_runs r ON r.id = h.workflow_id;
