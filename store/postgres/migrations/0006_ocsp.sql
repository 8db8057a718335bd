-- Pre-signed OCSP responses (RFC 6960, RFC 5019), the store-backed copy of
-- the responder's cache so that a restart serves them without re-signing.
-- One row per certificate and CertID hash algorithm ("sha1", "sha256"): a
-- response's CertID must use the hash of the request it answers.
CREATE TABLE ocsp_responses (
    issuer_id   TEXT NOT NULL,
    serial      TEXT NOT NULL,
    hash        TEXT NOT NULL,
    der         BYTEA NOT NULL,
    this_update BIGINT NOT NULL,
    next_update BIGINT NOT NULL,
    PRIMARY KEY (issuer_id, serial, hash)
);
CREATE INDEX ocsp_responses_next_update ON ocsp_responses (next_update);
