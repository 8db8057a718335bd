// Package managed runs CA-managed certificates (issue 7): certificates
// whose keys Sigil holds. The key is generated and sealed through the
// authority (inventory purpose "managed"), each certificate is signed on the
// authority's normal path (profile, name policy, lint) on channel "managed"
// and recorded with its audit event by the one issuance primitive
// (ca.Authority.Record), and every version is kept. Renewal happens at a
// fraction of each version's lifetime (RenewAt), at once when the current
// certificate is revoked, or when another intermediate than the active one
// issued it; the key is rotated per policy. A superseded version may be
// revoked (reason superseded) after an overlap. Every operation is one
// transaction with its audit events; the work is found by due times in the
// store, so it survives restarts. The private key leaves the CA only in a
// bundle fetched by the identity it belongs to (Service.Bundle): its own
// certificate over mTLS, or a token of role managed scoped to it, never an
// admin; every delivery is audited with the key's export.
//
// Keys: a key replaced by rotation is retired at once and destroyed
// (crypto-shredded) when the last certificate issued with it expires.
// Deleting a managed certificate stops its renewal and does the same with
// its current key, or destroys every key at once (destroyKeys) and revokes
// its unexpired certificates.
//
// The lifecycle job (lifecycle.ManagedRenewTask) and the /v1/managed routes
// (api) drive a Service; it asks the authority for what only the authority
// does (Issuer, ca.HeldKeyIssuer: signing, recording, the keys' generation,
// retirement, destruction and export, revocation) and keeps its own records
// (managed, versions, keys to destroy) in store, writing them through its
// own view of a transaction (Tx, tx.go).
//
// Imports: ca, ca/keystore (key algorithm and purpose names), ca/audit,
// store.
package managed
