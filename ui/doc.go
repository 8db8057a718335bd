// Package ui serves the auditor web page at /ui/: a read-only, server-rendered
// view of what the CA issued, to whom and when, and whether its record still
// verifies. It is an http.Handler that cmd/sigil mounts on the HTTPS listener.
//
// Pages are html/template documents with embedded templates and CSS; no
// JavaScript is served at all, so search, detail and downloads work in any
// browser, and the Content-Security-Policy forbids scripts outright.
//
// # Sessions
//
// An auditor or admin pastes an API token into the login form once. The
// token is checked by ca (tokens are stored hashed) and never kept: the page
// holds a server-side session, in memory, keyed by the SHA-256 of a random
// 256-bit id that lives only in an HttpOnly, Secure, SameSite=Strict
// __Host- cookie. Sessions expire after an idle period and an absolute
// lifetime, never outlive their token, and end when the token is revoked
// (checked on every request). They do not survive a restart of the server,
// by design: nothing that grants access is written to disk, and logging in
// again is cheap.
//
// The only POSTs are login and logout. Both require SameSite=Strict cookies,
// a same-origin Origin header when the browser sends one, and a CSRF token
// compared in constant time: for logout the session's own, for login a
// double-submitted value from a short-lived cookie (login CSRF). Every other
// non-GET request is refused (403): the page changes nothing.
//
// # Auditing
//
// Every authenticated page view and download is recorded before it is
// answered, as an audit.read event naming the actor, path and query (who
// looked at what); logins, logouts and logins refused for a token's role
// are audited too, while a login whose token does not authenticate is only
// counted and summed per address (ca.Access.RecordUnauthenticatedRefusal).
// The page reads the history through Authority and admits its users
// through Access (ca.Authority.Access): New takes both.
// Failed logins are rate-limited per client address and overall.
//
// # Extension points
//
// Config.Export (certificate export as CSV or NDJSON) and Config.Log (the
// transparency log of issued certificates) are optional: export buttons, the
// inclusion proof status of a certificate and the log verification appear
// only when they are set. [CheckedLog] is the Log of a live CA: over the
// log ca serves (*ca.Log) and the store it is kept in, it checks the latest
// tree head's signer against the root, the inclusion proof against that
// head (the leaf recomputed from the certificate record), and recomputes
// the whole log, as an outside auditor would (ca.VerifySignedTreeHead,
// ca.VerifyInclusion, ca.VerifyLog).
//
// Imports: ca (principals, errors, audit verification report, transparency
// log types and verification), api/wire
// (the query parameters of /v1/certificates, the status of each error kind
// and the job status type, so the page and the API filter and answer alike;
// never api itself), store (record types), ca/audit (event type, action
// names), internal/reqlog (the request log line).
package ui
