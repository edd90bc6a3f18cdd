-- 0004: when workers last claimed each workflow and activity name, so that a workflow no
-- live worker runs says so (WorkflowRecord.hint).

CREATE TABLE pollers (
    kind         TEXT NOT NULL,
    name         TEXT NOT NULL,
    last_poll_at INTEGER NOT NULL,
    PRIMARY KEY (kind, name)
) WITHOUT ROWID;
