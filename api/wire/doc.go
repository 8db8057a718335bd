// Package wire holds what the two HTTP surfaces, the /v1 API (package api)
// and the auditor page (package ui), say alike on the wire, so that neither
// imports the other: the certificate query parameters and their opaque
// cursors, the HTTP status of each ca.Kind, and the scheduled jobs' status.
//
// Imports: ca (error kinds), store (filter and record types).
package wire
