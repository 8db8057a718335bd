// Package client is the typed client of the /v1 API: one method per
// endpoint, taking and returning the request and response types the
// server itself encodes and decodes (package api), so that the two cannot
// drift apart. An error answer ({"error","detail"}) comes back as *Error.
// The CLI, `sigil agent`, `sigil bench` and the end-to-end tests use it.
//
// The caller supplies the *http.Client (roots, client certificate,
// timeouts); the client adds the bearer token when it has one.
//
// Imports: api (request and response types), ca (record types the API
// lists as they are), lifecycle/managed (managed-certificate views).
package client
