-- 0009: runs by when they ended, for retention.
CREATE INDEX workflows_closed ON workflows (completed_at) WHERE completed_at IS NOT NULL;
