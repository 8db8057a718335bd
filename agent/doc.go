// Package agent keeps a certificate and its key on disk fresh for a server
// that uses them: `sigil agent`. It renews over mutual TLS (POST /v1/renew,
// presenting the current pair), or fetches a CA-managed bundle
// (GET /v1/managed/{name}/bundle), when the certificate reaches its renewal
// point: a random time in the server's ACME Renewal Information window
// (RFC 9773) when it offers one, else a fixed fraction of the lifetime.
//
// Invariants: a certificate or key is written only after the answer has
// been checked (it chains to the trusted roots, certifies the key written
// with it, names what the old one named); files are replaced atomically
// (temporary file, fsync, rename, fsync of the directory) and never removed
// or overwritten on failure; a key change survives a crash at any point
// (see writePair); private keys and tokens are never logged. Failures are
// retried with exponential backoff and full jitter. Time comes from an
// injected clock.
//
// Imports: api/client (the typed /v1 client) and api (its request and
// response types) only; the agent is a client and knows nothing of the
// CA's internals. ACME (directory, renewalInfo) is plain HTTP here.
package agent
