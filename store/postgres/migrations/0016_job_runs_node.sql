-- The node (sigil serve's node.name) that ran each job run: several nodes
-- may share one database, and an operator asks which one ran a job.
ALTER TABLE job_runs ADD COLUMN node TEXT NOT NULL DEFAULT '';
