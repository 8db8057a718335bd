-- Transparency log of issued certificates: an append-only Merkle tree with
-- RFC 9162 §2.1.1 hashing whose leaves are audit.LogLeaf(created, der) of
-- every certificate, in insertion order. Tx.InsertCertificate appends the
-- leaf in the same transaction (and savepoint) as the certificate row, so a
-- refused write leaves no leaf and consumes no index. Rows are never
-- updated or deleted. Certificates recorded before this migration are
-- appended, in id order, when the store opens (see catchUpLog).

-- One row per leaf: idx counts from 0 with no gaps; leaf_hash is
-- SHA-256(0x00 || leaf), kept so that proofs need no certificate DER.
CREATE TABLE log_entries (
    idx       INTEGER PRIMARY KEY,
    cert_id   BIGINT NOT NULL UNIQUE REFERENCES certificates(id),
    leaf_hash BLOB NOT NULL
);

-- Every completed (perfect) subtree above the leaves, addressed as in
-- RFC 9162 / transparency-dev compact ranges: (level >= 1, index). The root
-- of any tree size and every inclusion or consistency proof is assembled
-- from O(log n) of these rows.
CREATE TABLE log_nodes (
    level BIGINT NOT NULL,
    idx   BIGINT NOT NULL,
    hash  BLOB NOT NULL,
    PRIMARY KEY (level, idx)
);

-- Signed tree heads, oldest first by (size, time); all are kept so that an
-- auditor can fetch the head it saved and ask for consistency with a newer one.
CREATE TABLE log_heads (
    size      BIGINT NOT NULL,
    time      BIGINT NOT NULL,
    root_hash BLOB NOT NULL,
    key_id    TEXT NOT NULL,
    signature BLOB NOT NULL,
    PRIMARY KEY (size, time)
);
