// Package store persists everything the CA keeps: keys and key-encryption
// keys, issuers, certificates and their revocation, the audit chain, API
// tokens and settings.
//
// Store is the one interface every backend implements: SQLite (the embedded
// default, modernc.org/sqlite, pure Go) here, and PostgreSQL in
// store/postgres, for several nodes sharing one database. Its doc comments
// are the contract, and store/storetest checks it: a backend passes
// storetest.Run (both do in their TestContract). No consumer takes the whole
// surface: acme, revocation and lifecycle each declare the reads they make
// and the view of Tx their transaction callbacks receive (acme.Tx,
// revocation.Tx, lifecycle.Tx), so what a backend must get right for each
// is written beside its use.
//
// Writes run only inside WithTx, whose function executes in a single writer
// goroutine: concurrent
// callers are batched into one shared transaction (group commit), each in its
// own savepoint, so a refused write rolls back alone and one fsync covers the
// whole batch. WithTx returns only after the batch is durable
// (journal_mode=WAL, synchronous=FULL).
//
// The audit chain is appended inside the same transaction as the change it
// records: Tx.AppendAudit assigns the sequence number and hash. The writer
// re-reads the committed head at the start of every batch, under the write
// lock, so another process writing the same file (an offline command such as
// sigil ca root-crl while sigil serve runs) extends the one chain.
//
// State transitions that must not race, such as revoking a certificate only
// if it is not revoked yet, are conditions of the UPDATE itself, never a read
// followed by a write, so they hold when several nodes share one database.
//
// Certificate rows and audit events are never deleted. Tidy archives
// certificates long expired (Tx.ArchiveCertificates): the row stays, but the
// partial indexes of hot paths (OCSP refresh, CRL generation, expiry
// notices), whose queries say archived = 0, drop it. What is deleted are
// dead protocol records past their time (Tx.PurgeExpired), a bounded batch
// per call so that the single writer is never held long.
//
// Every certificate is also a leaf of the transparency log: InsertCertificate
// appends audit.LogLeaf(Created, DER) at the next index in the certificate's
// own savepoint, storing its leaf hash and every subtree it completes, so a
// rolled-back write leaves no leaf and consumes no index. The writer keeps
// the tree's right border (a compact range) in memory and, like the audit
// head, re-reads the committed size at the start of every batch. Roots and
// proofs of any size read O(log n) stored nodes; SignTreeHead signs on the
// writer so that no append interleaves. Certificates recorded before the
// log existed are appended, in id order, when the store opens.
//
// Imports: only ca/audit from this module (and transparency-dev/merkle for
// compact ranges and proof node selection).
package store
