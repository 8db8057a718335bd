-- Expiry notices (lifecycle job "expiry-notify") that a webhook receiver
-- accepted: one row per certificate and threshold (nanoseconds before
-- not_after), so that each notice is sent once, across restarts. A failed
-- delivery writes nothing and is tried again at the next run. Tidy drops
-- the rows of certificates it archives.
CREATE TABLE expiry_notices (
    issuer_id TEXT NOT NULL,
    serial    TEXT NOT NULL,
    threshold BIGINT NOT NULL,
    event     TEXT NOT NULL,
    not_after BIGINT NOT NULL,
    delivered BIGINT NOT NULL,
    PRIMARY KEY (issuer_id, serial, threshold)
);
CREATE INDEX expiry_notices_not_after ON expiry_notices (not_after);
