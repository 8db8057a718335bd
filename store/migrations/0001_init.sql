-- Sigil schema v1. Times are Unix nanoseconds, UTC.
CREATE TABLE keks (
    id         TEXT PRIMARY KEY,
    backend    TEXT NOT NULL,
    params     BLOB NOT NULL,
    check_blob BLOB NOT NULL,
    state      TEXT NOT NULL,
    created    BIGINT NOT NULL
);

CREATE TABLE keys (
    id          TEXT PRIMARY KEY,
    purpose     TEXT NOT NULL,
    algorithm   TEXT NOT NULL,
    backend     TEXT NOT NULL,
    state       TEXT NOT NULL,
    public_key  BLOB NOT NULL,
    kek_id      TEXT,
    wrapped_dek BLOB,
    ciphertext  BLOB,
    created     BIGINT NOT NULL,
    rotated     BIGINT NOT NULL DEFAULT 0,
    last_used   BIGINT NOT NULL DEFAULT 0,
    destroyed   BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE issuers (
    id        TEXT PRIMARY KEY,
    kind      TEXT NOT NULL,
    parent_id TEXT NOT NULL DEFAULT '',
    key_id    TEXT NOT NULL REFERENCES keys(id),
    cert_der  BLOB NOT NULL,
    state     TEXT NOT NULL,
    created   BIGINT NOT NULL
);

CREATE TABLE certificates (
    id            INTEGER PRIMARY KEY,
    issuer_id     TEXT NOT NULL REFERENCES issuers(id),
    serial        TEXT NOT NULL,
    subject       TEXT NOT NULL,
    sans          TEXT NOT NULL,
    not_before    BIGINT NOT NULL,
    not_after     BIGINT NOT NULL,
    key_algorithm TEXT NOT NULL,
    profile       TEXT NOT NULL,
    requester     TEXT NOT NULL,
    channel       TEXT NOT NULL,
    der           BLOB NOT NULL,
    created       BIGINT NOT NULL,
    revoked_at    BIGINT NOT NULL DEFAULT 0,
    revoke_reason INTEGER NOT NULL DEFAULT 0,
    UNIQUE (issuer_id, serial)
);
CREATE INDEX certificates_serial ON certificates (serial);
CREATE INDEX certificates_not_after ON certificates (not_after);
CREATE INDEX certificates_created ON certificates (created);
CREATE INDEX certificates_profile ON certificates (profile, id);
CREATE INDEX certificates_requester ON certificates (requester, id);

CREATE TABLE audit_events (
    seq       BIGINT PRIMARY KEY,
    time      BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    target    TEXT NOT NULL,
    detail    TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    hash      BLOB NOT NULL
);
CREATE INDEX audit_events_time ON audit_events (time);
CREATE INDEX audit_events_action ON audit_events (action, seq);

CREATE TABLE audit_checkpoints (
    seq       BIGINT PRIMARY KEY,
    hash      BLOB NOT NULL,
    time      BIGINT NOT NULL,
    key_id    TEXT NOT NULL,
    signature BLOB NOT NULL
);

CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,
    secret_hash BLOB NOT NULL,
    role        TEXT NOT NULL,
    profiles    TEXT NOT NULL,
    description TEXT NOT NULL,
    created     BIGINT NOT NULL,
    expires     BIGINT NOT NULL DEFAULT 0,
    revoked     BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
