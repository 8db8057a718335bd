// Package ca is the authority: the CA hierarchy, issuance profiles and name
// policy, serial numbers, pre-issuance linting, signing, API tokens, and the
// record of every certificate.
//
// Issuance follows one path for every channel (API, CLI, ACME, renewals):
// parse and check the CSR, apply the profile and name policy, build the
// certificate, sign a copy with a throwaway key and lint it with zlint, sign
// with the real intermediate key only if the lint passes, then record the
// certificate and its audit event in one durable transaction before returning
// it. A refused request is audited and leaves no certificate row and no used
// serial.
//
// Imports: ca/keystore, store, ca/audit. Surfaces (ca/api, acme, revocation,
// lifecycle) import ca; ca imports none of them.
package ca
