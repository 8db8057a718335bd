-- CRLs. crl_shard is the CRL a certificate's distribution point names: 0 is
-- the issuer's whole CRL (/crl/{issuer}.crl), 1..N a partition
-- (/crl/{issuer}/{shard}.crl). Rows issued before this migration name the
-- whole CRL, as their CDP says.
ALTER TABLE certificates ADD COLUMN crl_shard INTEGER NOT NULL DEFAULT 0;
-- CRL generation reads, per issuer and shard, the revoked certificates not
-- expired before the previous CRL: a covering partial index, so the scan
-- touches neither unrevoked rows nor the DER blobs.
CREATE INDEX certificates_crl ON certificates (issuer_id, crl_shard, not_after, serial, revoked_at, revoke_reason, invalidity_date)
    WHERE revoked_at != 0;

-- The latest CRL of each issuer and shard. number only grows (RFC 5280
-- §5.2.3); the DER is served at once after a restart.
CREATE TABLE crl_state (
    issuer_id   TEXT NOT NULL REFERENCES issuers(id),
    shard       INTEGER NOT NULL,
    number      BIGINT NOT NULL,
    this_update BIGINT NOT NULL,
    next_update BIGINT NOT NULL,
    der         BYTEA NOT NULL,
    PRIMARY KEY (issuer_id, shard)
);
