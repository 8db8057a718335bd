-- Managed certificates (issue 7): certificates whose keys Sigil holds,
-- renews and rotates. One row per name in managed (its policy and current
-- version), one per issued version in managed_versions, one per key in
-- managed_keys. The renewal job finds its work through the partial indexes
-- on the due times (renew_due, revoke_due, destroy_due), never by a scan.
CREATE TABLE managed (
    name          TEXT PRIMARY KEY,
    profile       TEXT NOT NULL,
    sans          TEXT NOT NULL,                -- newline-joined, as certificates.sans
    key_type      TEXT NOT NULL,
    validity      BIGINT NOT NULL DEFAULT 0,    -- nanoseconds; 0: the profile default
    renew_at      TEXT NOT NULL,                -- fraction of the lifetime, "2/3"
    rotate_every  INTEGER NOT NULL,             -- 0 never, 1 always, N every Nth renewal
    revoke_after  BIGINT NOT NULL DEFAULT -1,   -- nanoseconds; -1: never revoke the previous version
    state         TEXT NOT NULL,                -- active, deleted
    created       BIGINT NOT NULL,
    created_by    TEXT NOT NULL,
    deleted       BIGINT NOT NULL DEFAULT 0,
    version       INTEGER NOT NULL,             -- the current version
    serial        TEXT NOT NULL,                -- its certificate
    not_after     BIGINT NOT NULL,              -- its notAfter
    issuer_id     TEXT NOT NULL,                -- its issuer
    key_id        TEXT NOT NULL REFERENCES keys(id),
    key_uses      INTEGER NOT NULL,             -- versions issued with key_id
    renew_due     BIGINT NOT NULL,              -- when the current version is renewed
    last_error    TEXT NOT NULL DEFAULT '',
    last_attempt  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX managed_renew_due ON managed (renew_due, name) WHERE state = 'active';
CREATE INDEX managed_issuer ON managed (issuer_id) WHERE state = 'active';
CREATE INDEX managed_serial ON managed (serial);

CREATE TABLE managed_versions (
    name        TEXT NOT NULL REFERENCES managed(name),
    version     INTEGER NOT NULL,
    serial      TEXT NOT NULL,
    issuer_id   TEXT NOT NULL,
    key_id      TEXT NOT NULL REFERENCES keys(id),
    created     BIGINT NOT NULL,
    not_before  BIGINT NOT NULL,
    not_after   BIGINT NOT NULL,
    state       TEXT NOT NULL,                  -- current, superseded
    reason      TEXT NOT NULL,                  -- why it was issued: created, due, revoked, issuer, manual
    revoke_due  BIGINT NOT NULL DEFAULT 0,      -- when to revoke it as superseded; 0: never (or done)
    PRIMARY KEY (name, version)
);
CREATE UNIQUE INDEX managed_versions_serial ON managed_versions (serial);
CREATE INDEX managed_versions_revoke_due ON managed_versions (revoke_due, serial) WHERE revoke_due > 0;

CREATE TABLE managed_keys (
    key_id       TEXT PRIMARY KEY REFERENCES keys(id),
    name         TEXT NOT NULL REFERENCES managed(name),
    not_after    BIGINT NOT NULL,               -- latest notAfter of a certificate with the key
    destroy_due  BIGINT NOT NULL DEFAULT 0      -- when to crypto-shred it; 0: in use, or done
);
CREATE INDEX managed_keys_name ON managed_keys (name);
CREATE INDEX managed_keys_destroy_due ON managed_keys (destroy_due, key_id) WHERE destroy_due > 0;

-- A token of role "managed" may fetch the bundle of this managed name only.
ALTER TABLE tokens ADD COLUMN managed TEXT NOT NULL DEFAULT '';
