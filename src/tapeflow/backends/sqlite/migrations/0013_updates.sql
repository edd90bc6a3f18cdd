-- 0013: updates. Each update sent to a workflow id, kept for as long as the id, across its
-- runs: the run its request went to, and its answer (an encoded UpdateCompleted or
-- UpdateRejected), NULL until the commit that decides it stores it.
CREATE TABLE updates (
    workflow_id TEXT NOT NULL,
    update_id   TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    outcome     TEXT,
    PRIMARY KEY (workflow_id, update_id)
) WITHOUT ROWID;
