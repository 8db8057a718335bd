-- Tidy (lifecycle job "tidy"). Certificate rows are never deleted: the
-- record is what auditors query. Instead, a certificate expired for longer
-- than tidy.retention is marked archived (Unix nanoseconds of the tidy run;
-- 0 = live), and the indexes of the hot paths are partial on archived = 0,
-- so they hold live certificates only whatever the CA's history.
ALTER TABLE certificates ADD COLUMN archived BIGINT NOT NULL DEFAULT 0;

-- The OCSP refresh walks one issuer's unexpired certificates in id order,
-- a page at a time; without this index each page sorted all of the
-- issuer's certificates, expired ones included.
CREATE INDEX certificates_live ON certificates (issuer_id, id) WHERE archived = 0;
-- Expiry notices and tidy itself look for live certificates by expiry.
CREATE INDEX certificates_live_expiry ON certificates (not_after) WHERE archived = 0;
-- CRL generation: the revoked certificates of a shard by expiry, as in
-- 0007, without archived ones (expired long before any CRL still lists them).
DROP INDEX certificates_crl;
CREATE INDEX certificates_crl ON certificates (issuer_id, crl_shard, not_after, serial, revoked_at, revoke_reason, invalidity_date)
    WHERE revoked_at != 0 AND archived = 0;

-- Tidy purges ACME orders and authorizations (with their challenges) past
-- their expiry plus the retention: index the expiry so that it need not scan.
CREATE INDEX acme_orders_expires ON acme_orders (expires, id);
CREATE INDEX acme_authzs_expires ON acme_authzs (expires, id);
