-- 0008: the rows of a run (its task, inbox, activity tasks and history) no longer reference
-- workflows by foreign key. Every write of them is made by a function of functions.sql that
-- has just found the run (and locked it where it must), so the key checks proved nothing
-- new, while each one share-locked the run's row: about nine per workflow, and the locks
-- that overlapped a commit's update of the row made multixacts that every later look at it
-- had to resolve. Measured with ./scripts/bench --backend postgres: see CHANGELOG.md.

ALTER TABLE workflow_tasks DROP CONSTRAINT workflow_tasks_run_id_fkey;
ALTER TABLE inbox DROP CONSTRAINT inbox_run_id_fkey;
ALTER TABLE activity_tasks DROP CONSTRAINT activity_tasks_run_id_fkey;
ALTER TABLE history DROP CONSTRAINT history_run_id_fkey;
