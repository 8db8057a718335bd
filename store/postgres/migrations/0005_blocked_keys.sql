-- Blocked keys: the SHA-256 of a public key's DER SubjectPublicKeyInfo. A
-- keyCompromise revocation (or an operator) blocks a key; no certificate or
-- ACME account may use it again.
CREATE TABLE blocked_keys (
    spki_sha256 BYTEA PRIMARY KEY,
    reason      TEXT NOT NULL,
    source      TEXT NOT NULL,
    actor       TEXT NOT NULL,
    created     BIGINT NOT NULL
);
-- Each certificate's key hash, so that blocking a key finds every other
-- certificate with it. Rows recorded before this migration are filled in by
-- the store when it opens.
ALTER TABLE certificates ADD COLUMN spki_sha256 BYTEA NOT NULL DEFAULT ''::bytea;
CREATE INDEX certificates_spki ON certificates (spki_sha256) WHERE octet_length(spki_sha256) > 0;
