-- 0008: idempotency keys of events sent to a workflow id, kept across its runs.
CREATE TABLE event_keys (
    workflow_id TEXT NOT NULL,
    key         TEXT NOT NULL,
    PRIMARY KEY (workflow_id, key)
) WITHOUT ROWID;
