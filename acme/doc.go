// Package acme is Sigil's RFC 8555 server: directory, nonces, JWS
// verification, accounts, orders, authorizations and challenges, and
// certificate download, with RFC 7807 problem documents for every error.
//
// Accounts, orders, authorizations, challenges and spent nonces are kept in
// store (its ACME record types); issuance goes only through ca, so every
// certificate passes the same profile, policy, lint and record path as any
// other channel, with the ACME account as requester.
//
// An account, and everything reached through it, belongs to the endpoint it
// was created on; a certificate belongs to the account and endpoint of the
// order that issued it (store.ACMECertOrder), not to the requester identity
// it records.
//
// ACME declares what it asks of the store: Store for reads, Tx for what
// one transaction writes (every write runs through update, which hands the
// callback that view, never the whole store.Tx).
//
// Nonces are HMAC-authenticated, carry their issue time, and are recorded
// as spent in the store when used, so they survive restarts and work across
// nodes sharing one database.
//
// Imports: ca, store, ca/audit, internal/reqlog (the request log line),
// internal/httpstatus (the Allow header of a 405). Never revocation or
// lifecycle.
package acme
