-- 0006: when workers last claimed each workflow and activity name, so that a workflow no
-- live worker runs says so (WorkflowRecord.hint).

CREATE TABLE pollers (
    kind         text NOT NULL,
    name         text NOT NULL,
    last_poll_at timestamptz NOT NULL,
    PRIMARY KEY (kind, name)
);
