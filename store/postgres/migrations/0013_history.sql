-- History queries (issue 8) on PostgreSQL. Tx.InsertCertificate writes the
-- side table below in the certificate's savepoint, so a query never misses
-- a committed row and a refused one leaves nothing.
--
-- names: the lower-cased subject common name and SANs, each followed by a
-- newline and the whole preceded by one ("\nfoo.example\nfoo\n"), as in
-- the SQLite schema. Substring search is a pg_trgm index on it (SQLite's
-- FTS5 trigram table): LIKE '%x%' is answered from the index.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
ALTER TABLE certificates ADD COLUMN names TEXT NOT NULL DEFAULT '';
CREATE INDEX certificates_names_trgm ON certificates USING gin (names gin_trgm_ops);

-- One row per distinct name of a certificate, the name reversed (by
-- character): an exact name is one key, a suffix a key prefix (LIKE 'x%'
-- on the C collation is a range).
CREATE TABLE certificate_names (
    rname   TEXT COLLATE "C" NOT NULL,
    cert_id BIGINT NOT NULL,
    PRIMARY KEY (rname, cert_id)
);

-- The order indexes cover the filter columns, as in SQLite.
DROP INDEX certificates_created;
CREATE INDEX certificates_created ON certificates (created, not_after, revoked_at, profile, requester, channel, issuer_id, key_algorithm);
DROP INDEX certificates_not_after;
CREATE INDEX certificates_not_after ON certificates (not_after, created, revoked_at, profile, requester, channel, issuer_id, key_algorithm);

DROP INDEX certificates_profile;
DROP INDEX certificates_requester;
CREATE INDEX certificates_profile ON certificates (profile, created);
CREATE INDEX certificates_profile_expiry ON certificates (profile, not_after);
CREATE INDEX certificates_requester ON certificates (requester, created);
CREATE INDEX certificates_requester_expiry ON certificates (requester, not_after);
CREATE INDEX certificates_channel ON certificates (channel, created);
CREATE INDEX certificates_key_algorithm ON certificates (key_algorithm, created);
CREATE INDEX certificates_issuer ON certificates (issuer_id, created);

CREATE INDEX certificates_revoked_created ON certificates (created, revoked_at) WHERE revoked_at != 0;
CREATE INDEX certificates_revoked_expiry ON certificates (not_after, revoked_at) WHERE revoked_at != 0;

-- The ACME account filter: the certificates whose serial an order of the
-- account names, kept by the triggers below whichever of the order and the
-- certificate is written first, and when an order is purged (tidy), so it
-- says what a join with acme_orders says.
CREATE INDEX acme_orders_cert ON acme_orders (cert_serial, account_id) WHERE cert_serial != '';
CREATE TABLE certificate_accounts (
    account_id TEXT NOT NULL,
    created    BIGINT NOT NULL,
    not_after  BIGINT NOT NULL,
    cert_id    BIGINT NOT NULL,
    PRIMARY KEY (account_id, created, cert_id)
);
CREATE INDEX certificate_accounts_expiry ON certificate_accounts (account_id, not_after, cert_id);
CREATE INDEX certificate_accounts_cert ON certificate_accounts (cert_id, account_id);

CREATE FUNCTION certificate_accounts_cert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO certificate_accounts (account_id, created, not_after, cert_id)
        SELECT account_id, NEW.created, NEW.not_after, NEW.id FROM acme_orders
        WHERE cert_serial = NEW.serial AND cert_serial != ''
        ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER certificate_accounts_cert AFTER INSERT ON certificates
    FOR EACH ROW EXECUTE FUNCTION certificate_accounts_cert();

CREATE FUNCTION certificate_accounts_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO certificate_accounts (account_id, created, not_after, cert_id)
        SELECT NEW.account_id, created, not_after, id FROM certificates WHERE serial = NEW.cert_serial
        ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER certificate_accounts_order AFTER INSERT ON acme_orders
    FOR EACH ROW WHEN (NEW.cert_serial != '') EXECUTE FUNCTION certificate_accounts_order();

-- An order's certificate link that goes away (updated or purged) drops
-- its rows unless another order of the account names the same serial.
CREATE FUNCTION certificate_accounts_unlink(account TEXT, cert_serial TEXT) RETURNS void LANGUAGE sql AS $$
    DELETE FROM certificate_accounts WHERE $2 != '' AND account_id = $1
        AND cert_id IN (SELECT id FROM certificates WHERE serial = $2)
        AND NOT EXISTS (SELECT 1 FROM acme_orders o WHERE o.cert_serial = $2 AND o.account_id = $1);
$$;

CREATE FUNCTION certificate_accounts_order_serial() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM certificate_accounts_unlink(OLD.account_id, OLD.cert_serial);
    INSERT INTO certificate_accounts (account_id, created, not_after, cert_id)
        SELECT NEW.account_id, created, not_after, id FROM certificates
        WHERE NEW.cert_serial != '' AND serial = NEW.cert_serial
        ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER certificate_accounts_order_serial AFTER UPDATE OF cert_serial, account_id ON acme_orders
    FOR EACH ROW EXECUTE FUNCTION certificate_accounts_order_serial();

CREATE FUNCTION certificate_accounts_order_gone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM certificate_accounts_unlink(OLD.account_id, OLD.cert_serial);
    RETURN NULL;
END $$;
CREATE TRIGGER certificate_accounts_order_gone AFTER DELETE ON acme_orders
    FOR EACH ROW WHEN (OLD.cert_serial != '') EXECUTE FUNCTION certificate_accounts_order_gone();

-- Bounds for status filters in the issuance order.
CREATE INDEX certificates_lifetime ON certificates ((not_after - created));
