-- 0016: updates. Each update sent to a workflow id, kept for as long as the id, across its
-- runs: the run its request went to, and its answer (an UpdateCompleted or UpdateRejected),
-- NULL until the commit that decides it stores it.
CREATE TABLE updates (
    workflow_id text NOT NULL,
    update_id   text NOT NULL,
    run_id      text NOT NULL,
    outcome     json,
    PRIMARY KEY (workflow_id, update_id)
);
