// Package lifecycle runs Sigil's recurring work as named jobs on a gocron
// scheduler inside `sigil serve`: CRL publication, OCSP refresh and
// responder rotation, managed-certificate renewal, CA key rotation, tidy
// and expiry notices. Each job runs in singleton mode (never overlapping
// itself, whoever triggers it), every run is recorded in the store (start,
// end, result, error, items done), and a run that was due while the server
// was down runs at the next start. The jobs' work itself is passed in as
// Task functions; keys and certificates are touched only through ca.
package lifecycle
