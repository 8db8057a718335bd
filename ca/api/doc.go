// Package api serves the /v1 JSON API: issuance for admin and issuer tokens,
// certificate and audit queries for auditors, and token and key management
// for admins. Handlers decode, call ca, and encode; policy lives in ca.
//
// Errors are JSON {"error": kind, "detail": text} with a status chosen from
// the ca.Error kind in one table (status.go). Internal detail is logged,
// never sent.
//
// Imports: ca, store (record types), ca/audit (event type).
package api
