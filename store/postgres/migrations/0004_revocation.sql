-- Revocation. revoked_at = 0 means not revoked; invalidity_date = 0 means none
-- was given (RFC 5280 §5.3.2: when the key is known or suspected to have been
-- compromised, which may be before revoked_at).
ALTER TABLE certificates ADD COLUMN invalidity_date BIGINT NOT NULL DEFAULT 0;
-- CRLs and OCSP list one issuer's revoked certificates; few rows are revoked,
-- so the partial index stays small whatever the issuance volume.
CREATE INDEX certificates_revoked ON certificates (issuer_id, revoked_at) WHERE revoked_at != 0;
