-- History queries (issue 8): every CertFilter answers from an index on a
-- million certificates. Tx.InsertCertificate writes the side tables below in
-- the certificate's savepoint, so a query never misses a committed row and a
-- refused one leaves nothing. Rows recorded before this migration are filled
-- in when the store opens (see backfillNames).
--
-- names: the lower-cased subject common name and SANs, each followed by a
-- newline and the whole preceded by one ("\nfoo.example\nfoo\n"), so that
-- instr() checks an exact name, a suffix or a substring of one name on the
-- row itself when a query walks an order index instead.
ALTER TABLE certificates ADD COLUMN names TEXT NOT NULL DEFAULT '';

-- One row per distinct name of a certificate, the name reversed (by
-- character): an exact name is one key, a suffix a key range.
CREATE TABLE certificate_names (
    rname   TEXT NOT NULL,
    cert_id INTEGER NOT NULL,
    PRIMARY KEY (rname, cert_id)
) WITHOUT ROWID;

-- Substring search: trigrams of names, rowid = certificates.id. detail=none
-- keeps it small; its LIKE answers are candidates, rechecked on names.
CREATE VIRTUAL TABLE certificate_search USING fts5(
    names, content='certificates', content_rowid='id', tokenize='trigram', detail='none');

-- The order indexes cover the filter columns, so walking them in sort order
-- (newest, soonest expiry) tests a filter without reading the row, and the
-- summaries over a time range read the index alone.
DROP INDEX certificates_created;
CREATE INDEX certificates_created ON certificates (created, not_after, revoked_at, profile, requester, channel, issuer_id, key_algorithm);
DROP INDEX certificates_not_after;
CREATE INDEX certificates_not_after ON certificates (not_after, created, revoked_at, profile, requester, channel, issuer_id, key_algorithm);

-- An equality filter with the issuance order: the first page is the first
-- rows of one range, however rare the value. Profile and requester also
-- with the expiry order (expiring certificates of a team). These replace
-- (profile, id) and (requester, id), which no query uses any more.
DROP INDEX certificates_profile;
DROP INDEX certificates_requester;
CREATE INDEX certificates_profile ON certificates (profile, created);
CREATE INDEX certificates_profile_expiry ON certificates (profile, not_after);
CREATE INDEX certificates_requester ON certificates (requester, created);
CREATE INDEX certificates_requester_expiry ON certificates (requester, not_after);
CREATE INDEX certificates_channel ON certificates (channel, created);
CREATE INDEX certificates_key_algorithm ON certificates (key_algorithm, created);
CREATE INDEX certificates_issuer ON certificates (issuer_id, created);

-- Revoked certificates are few and written by revocation, not issuance:
-- partial indexes cost issuance nothing. A revocation-time range walks
-- them in the query's order, testing revoked_at in the index.
CREATE INDEX certificates_revoked_created ON certificates (created, revoked_at) WHERE revoked_at != 0;
CREATE INDEX certificates_revoked_expiry ON certificates (not_after, revoked_at) WHERE revoked_at != 0;

-- The ACME account filter: the certificates whose serial an order of the
-- account names, kept by the triggers below whichever of the order and the
-- certificate is written first, and when an order is purged (tidy), so it
-- says what a join with acme_orders says. The primary key walks one
-- account's certificates newest first; the expiry index soonest first.
CREATE INDEX acme_orders_cert ON acme_orders (cert_serial, account_id) WHERE cert_serial != '';
CREATE TABLE certificate_accounts (
    account_id TEXT NOT NULL,
    created    BIGINT NOT NULL,
    not_after  BIGINT NOT NULL,
    cert_id    INTEGER NOT NULL,
    PRIMARY KEY (account_id, created, cert_id)
) WITHOUT ROWID;
CREATE INDEX certificate_accounts_expiry ON certificate_accounts (account_id, not_after, cert_id);
CREATE INDEX certificate_accounts_cert ON certificate_accounts (cert_id, account_id);
INSERT OR IGNORE INTO certificate_accounts (account_id, created, not_after, cert_id)
    SELECT o.account_id, c.created, c.not_after, c.id
    FROM acme_orders o JOIN certificates c ON c.serial = o.cert_serial WHERE o.cert_serial != '';
CREATE TRIGGER certificate_accounts_cert AFTER INSERT ON certificates BEGIN
    INSERT OR IGNORE INTO certificate_accounts (account_id, created, not_after, cert_id)
        SELECT account_id, NEW.created, NEW.not_after, NEW.id FROM acme_orders
        WHERE cert_serial = NEW.serial AND cert_serial != '';
END;
CREATE TRIGGER certificate_accounts_order AFTER INSERT ON acme_orders WHEN NEW.cert_serial != '' BEGIN
    INSERT OR IGNORE INTO certificate_accounts (account_id, created, not_after, cert_id)
        SELECT NEW.account_id, created, not_after, id FROM certificates WHERE serial = NEW.cert_serial;
END;
CREATE TRIGGER certificate_accounts_order_serial AFTER UPDATE OF cert_serial, account_id ON acme_orders BEGIN
    DELETE FROM certificate_accounts WHERE OLD.cert_serial != '' AND account_id = OLD.account_id
        AND cert_id IN (SELECT id FROM certificates WHERE serial = OLD.cert_serial)
        AND NOT EXISTS (SELECT 1 FROM acme_orders WHERE cert_serial = OLD.cert_serial AND cert_serial != ''
            AND account_id = OLD.account_id);
    INSERT OR IGNORE INTO certificate_accounts (account_id, created, not_after, cert_id)
        SELECT NEW.account_id, created, not_after, id FROM certificates
        WHERE NEW.cert_serial != '' AND serial = NEW.cert_serial;
END;
CREATE TRIGGER certificate_accounts_order_gone AFTER DELETE ON acme_orders WHEN OLD.cert_serial != '' BEGIN
    DELETE FROM certificate_accounts WHERE account_id = OLD.account_id
        AND cert_id IN (SELECT id FROM certificates WHERE serial = OLD.cert_serial)
        AND NOT EXISTS (SELECT 1 FROM acme_orders WHERE cert_serial = OLD.cert_serial AND cert_serial != ''
            AND account_id = OLD.account_id);
END;

-- Bounds for status filters in the issuance order: a valid certificate was
-- issued after now - max(lifetime), an expired one before now -
-- min(lifetime); both are one index probe.
CREATE INDEX certificates_lifetime ON certificates (not_after - created);
