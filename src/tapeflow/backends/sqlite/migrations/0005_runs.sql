-- 0005: runs in the key. A workflow id has one or more runs (run_number 1, 2, ...; the
-- latest is the highest), and history, tasks and inbox belong to a run (run_id). Each
-- workflow becomes its first run, with a fresh random UUID as its run_id, and every row of
-- its history, inbox, activity tasks and workflow task follows it. The status CHECK also
-- admits the statuses of features to come, so that they need no table rebuild.
--
-- SQLite changes a key by rebuilding the tables: the old ones are renamed out of the way
-- (renaming rewrites their foreign keys to follow), the new ones made and filled, parents
-- first, then the old ones dropped, children first, so that foreign keys (on, and not to
-- be switched off inside the migration's transaction) hold at every statement. Ids of
-- inbox rows and activity tasks are kept, and so are their AUTOINCREMENT counters: an id
-- is never handed out twice.

DROP INDEX workflow_tasks_by_name;
DROP INDEX inbox_by_workflow;
DROP INDEX inbox_by_time;
DROP INDEX activity_tasks_ready;
ALTER TABLE workflows RENAME TO workflows_v4;
ALTER TABLE workflow_tasks RENAME TO workflow_tasks_v4;
ALTER TABLE inbox RENAME TO inbox_v4;
ALTER TABLE activity_tasks RENAME TO activity_tasks_v4;
ALTER TABLE history RENAME TO history_v4;

CREATE TABLE workflows (
    run_id         TEXT PRIMARY KEY,
    id             TEXT NOT NULL,
    run_number     INTEGER NOT NULL,
    name           TEXT NOT NULL,
    version        TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'failed',
                                                   'cancelled', 'terminated', 'timed_out',
                                                   'continued')),
    args           TEXT NOT NULL,
    result         TEXT,
    failure        TEXT,
    created_at     INTEGER NOT NULL,
    start_at       INTEGER NOT NULL,
    completed_at   INTEGER,
    parent_id      TEXT,
    history_length INTEGER NOT NULL DEFAULT 0,
    UNIQUE (id, run_number)
);
INSERT INTO workflows (run_id, id, run_number, name, version, status, args, result, failure,
                       created_at, start_at, completed_at, parent_id, history_length)
SELECT lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' ||
             substr(hex(randomblob(2)), 2) || '-' ||
             substr('89AB', 1 + (random() & 3), 1) || substr(hex(randomblob(2)), 2) ||
             '-' || hex(randomblob(6))),
       id, 1, name, version, status, args, result, failure, created_at, start_at,
       completed_at, parent_id, history_length
FROM workflows_v4;

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
    sticky_owner     TEXT
);
INSERT INTO workflow_tasks (run_id, name, lease_owner, lease_token, lease_expires_at,
                            not_before, failures, last_error, sticky_owner)
SELECT w.run_id, t.name, t.lease_owner, t.lease_token, t.lease_expires_at, t.not_before,
       t.failures, t.last_error, t.sticky_owner
FROM workflow_tasks_v4 t JOIN workflows w ON w.id = t.workflow_id;

CREATE TABLE inbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      TEXT NOT NULL REFERENCES workflows (run_id),
    visible_at  INTEGER NOT NULL,
    timer_seq   INTEGER,
    event       TEXT NOT NULL
);
INSERT INTO sqlite_sequence (name, seq) SELECT 'inbox', seq FROM sqlite_sequence
WHERE name = 'inbox_v4';
INSERT INTO inbox (id, run_id, visible_at, timer_seq, event)
SELECT e.id, w.run_id, e.visible_at, e.timer_seq, e.event
FROM inbox_v4 e JOIN workflows w ON w.id = e.workflow_id;

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
    UNIQUE (run_id, seq)
);
INSERT INTO sqlite_sequence (name, seq) SELECT 'activity_tasks', seq FROM sqlite_sequence
WHERE name = 'activity_tasks_v4';
INSERT INTO activity_tasks (id, run_id, seq, name, args, retry, attempt, visible_at,
                            lease_owner, lease_token, lease_expires_at, last_failure,
                            heartbeat_details)
SELECT a.id, w.run_id, a.seq, a.name, a.args, a.retry, a.attempt, a.visible_at,
       a.lease_owner, a.lease_token, a.lease_expires_at, a.last_failure, a.heartbeat_details
FROM activity_tasks_v4 a JOIN workflows w ON w.id = a.workflow_id;

CREATE TABLE history (
    run_id      TEXT NOT NULL REFERENCES workflows (run_id),
    seq         INTEGER NOT NULL,
    event       TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
INSERT INTO history (run_id, seq, event)
SELECT w.run_id, h.seq, h.event FROM history_v4 h JOIN workflows w ON w.id = h.workflow_id;

DROP TABLE history_v4;
DROP TABLE activity_tasks_v4;
DROP TABLE inbox_v4;
DROP TABLE workflow_tasks_v4;
DROP TABLE workflows_v4;

CREATE INDEX workflow_tasks_by_name ON workflow_tasks (name);
CREATE INDEX inbox_by_run ON inbox (run_id, visible_at);
CREATE INDEX inbox_by_time ON inbox (visible_at);
CREATE INDEX activity_tasks_ready ON activity_tasks (name, visible_at);
