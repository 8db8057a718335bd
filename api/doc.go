// Package api serves the /v1 JSON API: issuance and revocation for admin and
// issuer tokens (an issuer token revokes only what it requested), certificate
// and audit queries for auditors, and token and key management and release
// from certificateHold and bulk revocation (POST /v1/certificates/revoke, with
// a dry run that only counts) for admins; renewal (POST /v1/renew) for a server
// that presents its current certificate as its TLS client certificate, with
// no token; managed certificates (/v1/managed) for admins, and their bundles
// for the identity they belong to (its certificate over mTLS or a token of
// role managed; never an admin token); the transparency log (/v1/log: signed
// tree heads, inclusion and consistency proofs, entries) read-only for
// admins and auditors. Handlers decode, call ca, and encode; policy lives
// in ca.
//
// Every GET by an auditor token is recorded before it is answered, as an
// audit.read event (actor, path, query): who looked at what. Routes lists
// the route table, so tests cover every endpoint; each route names the
// query parameters it takes, and any other is refused with 400.
//
// Each handler group holds only its view of the authority (views.go):
// Gate for the adapter, TokenAdmin, Issuer, Renewal, Auditor and Admin.
// New takes two unions: Authority (the authority's views) and Access (the
// gate and tokens, ca.Authority.Access). The transparency log (TransparencyLog,
// ca.Authority.Log) and managed certificates (Managed, lifecycle/managed)
// come in Config.
//
// Errors are JSON {"error": kind, "detail": text} with a status chosen from
// the ca.Error kind in one table (status.go). Internal detail is logged,
// never sent.
//
// Imports: ca, lifecycle/managed (managed-certificate types), store (record
// types), ca/audit (event type), api/wire (what it shares with the auditor
// page: query parameters, the status table, job status), internal/reqlog
// (the request log line), internal/httpstatus (the Allow header of a 405).
package api
