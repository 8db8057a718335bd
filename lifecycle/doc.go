// Package lifecycle runs Sigil's recurring work as named jobs on a gocron
// scheduler inside `sigil serve`: CRL publication, OCSP refresh and
// responder rotation, managed-certificate renewal, CA key rotation, tidy
// and expiry notices. Each job runs in singleton mode (never overlapping
// itself, whoever triggers it), every run is recorded in the store (start,
// end, result, error, items done), and a run that was due while the server
// was down runs at the next start. The jobs' work itself is passed in as
// Task functions; keys and certificates are touched only through ca.
//
// The intermediate-rotate job's work is here too (IntermediateRotateTask):
// rotation at the configured point of the intermediate's life, then the
// destruction of retired intermediates whose certificates have all expired.
//
// Two jobs live here whole: Tidier (tidy.go), which archives long-expired
// certificates and purges dead protocol records without deleting anything
// an auditor needs, and Notifier (notify.go, webhook.go), which posts
// signed expiry notices to a webhook, each once, and keeps expiry gauges.
// The managed-renew job drives lifecycle/managed, which owns CA-managed
// certificates. What lifecycle reads is declared by Store, TidyStore and
// NotifyStore, what one transaction writes by Tx (every write runs through
// update, which hands the callback that view).
//
// Imports: ca (for what it asks of the authority), lifecycle/managed, store
// (for its own records); never acme or revocation.
package lifecycle
