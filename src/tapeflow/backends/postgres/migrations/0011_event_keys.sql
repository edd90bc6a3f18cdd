-- 0011: idempotency keys of events sent to a workflow id, kept across its runs.
CREATE TABLE event_keys (
    workflow_id text NOT NULL,
    key         text NOT NULL,
    PRIMARY KEY (workflow_id, key)
);
