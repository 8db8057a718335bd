-- Runs of the scheduled jobs (lifecycle): one row per run, inserted as
-- 'running' when it starts and completed when it ends, so that a run cut
-- short by a crash is seen (and marked 'interrupted') at the next start, and
-- a run that was due while the server was down is run then.
CREATE TABLE job_runs (
    id       INTEGER PRIMARY KEY,
    job      TEXT NOT NULL,
    trigger  TEXT NOT NULL,
    started  BIGINT NOT NULL,
    ended    BIGINT NOT NULL DEFAULT 0,
    result   TEXT NOT NULL,
    error    TEXT NOT NULL DEFAULT '',
    items    BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX job_runs_job ON job_runs (job, id);
