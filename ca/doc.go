// Package ca is the authority: the CA hierarchy, issuance profiles and name
// policy, serial numbers, pre-issuance linting, signing, API tokens, and the
// record of every certificate and its revocation.
//
// Issuance follows one path for every channel (API, CLI, ACME, renewals):
// parse and check the CSR, apply the profile and name policy, build the
// certificate, sign a copy with a throwaway key and lint it with zlint, sign
// with the real intermediate key only if the lint passes, then record the
// certificate and its audit event in one durable transaction before returning
// it. A refused request is audited and leaves no certificate row and no used
// serial; every such refusal is written by AuditRefusal, in one shape. A
// request refused before its caller authenticated is counted and summed per
// source instead (RecordUnauthenticatedRefusal), so that anonymous traffic
// cannot grow the audit log. Surfaces read an error's kind and detail with
// AsError or KindOf, which see through wrapping.
//
// Renewal over mutual TLS (Renew) authenticates the client by the
// certificate it presented in the handshake, checked against this CA's own
// issuers and record, and then issues through the same path for the same
// names and profile, recording the old serial as replaced.
//
// Revocation (Revoke, Unhold) is likewise one path for every surface: the
// reason is checked against RFC 5280 §5.3.1, the time comes from the
// authority's clock, and the new state and its audit event are written in one
// transaction whose UPDATE refuses a certificate already revoked. Only
// certificateHold can be undone. BulkRevoke revokes what a filter selects
// through the same Revoke, one transaction each, and audits the whole as one
// cert.bulk_revoked event besides.
//
// Every path that issues records through one primitive, record
// (record.go): the certificate row, its cert.issued event in one schema for
// every channel, and the caller's own rows (a key generated for it, an ACME
// order turning valid, a managed version) in one transaction. Keys the
// authority holds for others (lifecycle/managed) are certified without a
// CSR through HeldKeyIssuer (heldkey.go, Authority.HeldKeys): NamesFromSANs,
// CheckKeyType, SignLeaf, then Record; it also revokes with the caller's
// rows (RevokeRecords) and delivers a key to its identity (ExportKey).
//
// Every recorded certificate is a leaf of the transparency log (store
// appends it in the same transaction). The authority serves, through its
// Log (tlog.go), signed tree heads, signed by the audit key whose
// certificate the root issued, and proofs; VerifyLog recomputes the tree
// from the certificate records and checks it against every stored hash and
// signed head, naming the first leaf that does not match.
//
// Intermediate rotation (rotate.go) is its own type behind an accessor,
// Authority.Intermediates: the list of intermediates, the rotation point,
// the rotation itself and the destruction of rotated-out keys. CRL signing
// (crl.go) likewise is Authority.CRL, the authority as the CRL publisher
// uses it: shards, URLs, and signatures over TBSCertLists it checks.
// The gate of the HTTP surfaces is Authority.Access (access.go,
// tokens.go): API tokens created, listed, revoked and authenticated, and
// the audit record of reads, web sessions and access refusals.
//
// What one transaction of the authority writes is declared by Tx (tx.go),
// with the contract each method relies on; its transactions run through
// update, which hands the callback that view. A caller's commit hook
// (SignRequest.InTx, Issuance.Before and InTx, NewHMACSecret's inTx) gets
// the store.Tx and narrows it to its own view.
//
// The audit chain is checked three ways (verify.go, verifystate.go):
// VerifyAudit walks it whole against its signed checkpoints and any
// witnessed elsewhere; VerifyAuditTail checks only what follows the newest
// checkpoint, which a serving process does before it appends; VerifyState
// replays the chain into the state it describes (certificate status and DER,
// blocked keys, tokens, keys) and names every record that differs from it.
//
// Imports: ca/keystore, store, ca/audit. Surfaces (api, acme, revocation,
// lifecycle, lifecycle/managed) import ca; ca imports none of them.
package ca
