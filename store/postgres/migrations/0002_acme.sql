-- ACME server records (RFC 8555). Times are Unix nanoseconds, UTC; 0 means unset.
-- Lists are JSON arrays in TEXT columns.
CREATE TABLE acme_accounts (
    id             TEXT PRIMARY KEY,
    endpoint       TEXT NOT NULL,
    key_thumbprint TEXT NOT NULL,
    key_jwk        BYTEA NOT NULL,
    status         TEXT NOT NULL,
    contacts       TEXT NOT NULL,
    terms_agreed   BOOLEAN NOT NULL,
    eab_key_id     TEXT NOT NULL DEFAULT '',
    requester      TEXT NOT NULL,
    created        BIGINT NOT NULL,
    -- RFC 8555 §7.3.1: one account per key (per endpoint here).
    UNIQUE (endpoint, key_thumbprint)
);
-- An external account binding ties its key to one account (RFC 8555 §7.3.4).
CREATE UNIQUE INDEX acme_accounts_eab_key ON acme_accounts (eab_key_id) WHERE eab_key_id != '';

CREATE TABLE acme_orders (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES acme_accounts(id),
    endpoint    TEXT NOT NULL,
    status      TEXT NOT NULL,
    identifiers TEXT NOT NULL,
    profile     TEXT NOT NULL,
    not_before  BIGINT NOT NULL DEFAULT 0,
    not_after   BIGINT NOT NULL DEFAULT 0,
    expires     BIGINT NOT NULL,
    authz_ids   TEXT NOT NULL,
    cert_serial TEXT NOT NULL DEFAULT '',
    replaces    TEXT NOT NULL DEFAULT '',
    error       BYTEA,
    created     BIGINT NOT NULL,
    updated     BIGINT NOT NULL
);
-- Order ids are random, so an account's orders are listed newest first by
-- (created, id): the index serves both the account lookup and the order.
CREATE INDEX acme_orders_account ON acme_orders (account_id, created, id);

CREATE TABLE acme_authzs (
    id         TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES acme_accounts(id),
    status     TEXT NOT NULL,
    id_type    TEXT NOT NULL,
    id_value   TEXT NOT NULL,
    wildcard   BOOLEAN NOT NULL,
    expires    BIGINT NOT NULL
);
-- Authorization reuse: equality on everything but expires, latest expiry first.
CREATE INDEX acme_authzs_reuse ON acme_authzs (account_id, id_type, id_value, wildcard, status, expires);

CREATE TABLE acme_challenges (
    id        TEXT PRIMARY KEY,
    authz_id  TEXT NOT NULL REFERENCES acme_authzs(id),
    position  INTEGER NOT NULL,
    type      TEXT NOT NULL,
    token     TEXT NOT NULL,
    status    TEXT NOT NULL,
    validated BIGINT NOT NULL DEFAULT 0,
    error     BYTEA,
    UNIQUE (authz_id, position)
);

-- Spent nonces: the replay record for HMAC-authenticated nonces, kept until they expire.
CREATE TABLE acme_nonces (
    nonce   TEXT PRIMARY KEY,
    expires BIGINT NOT NULL
);
CREATE INDEX acme_nonces_expires ON acme_nonces (expires);

CREATE TABLE acme_eab_keys (
    id        TEXT PRIMARY KEY,
    endpoint  TEXT NOT NULL,
    hmac_key  BYTEA NOT NULL,
    requester TEXT NOT NULL,
    created   BIGINT NOT NULL,
    used      BIGINT NOT NULL DEFAULT 0,
    revoked   BIGINT NOT NULL DEFAULT 0
);
