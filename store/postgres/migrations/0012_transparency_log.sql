-- Transparency log of issued certificates: an append-only Merkle tree with
-- RFC 9162 §2.1.1 hashing whose leaves are audit.LogLeaf(created, der) of
-- every certificate, in insertion order. Tx.InsertCertificate appends the
-- leaf in the same transaction (and savepoint) as the certificate row, so a
-- refused write leaves no leaf and consumes no index. Rows are never
-- updated or deleted. Certificates recorded before this migration are
-- appended by the SQLite backend; here the log exists from the first row.

-- Each table is one B-tree (no secondary index): every issuance writes to
-- both, and each more index is one more page per commit.
--
-- One row per leaf: idx counts from 0 with no gaps; cert_id is the
-- certificates.id the leaf encodes (both grow together, so a certificate's
-- leaf is found by binary search on idx); leaf_hash is SHA-256(0x00 || leaf),
-- kept so that proofs need no certificate DER.
CREATE TABLE log_entries (
    idx       BIGINT PRIMARY KEY,
    cert_id   BIGINT NOT NULL,
    leaf_hash BYTEA NOT NULL
);

-- Every completed (perfect) subtree above the leaves. A subtree at level L
-- >= 1 and index I (as in RFC 9162 and transparency-dev compact ranges)
-- has id = I * 2^(L+1) + 2^L - 1, its in-order position in the tree, which
-- is unique across levels. The root of any tree size and every inclusion
-- or consistency proof is assembled from O(log n) of these rows.
CREATE TABLE log_nodes (
    id   BIGINT PRIMARY KEY,
    hash BYTEA NOT NULL
);

-- Signed tree heads, oldest first by (size, time); all are kept so that an
-- auditor can fetch the head it saved and ask for consistency with a newer one.
CREATE TABLE log_heads (
    size      BIGINT NOT NULL,
    time      BIGINT NOT NULL,
    root_hash BYTEA NOT NULL,
    key_id    TEXT NOT NULL,
    signature BYTEA NOT NULL,
    PRIMARY KEY (size, time)
);
