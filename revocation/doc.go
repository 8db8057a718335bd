// Package revocation publishes certificate status: CRLs and the OCSP
// responder, served on the plain HTTP listener.
//
// It imports ca and store only (never acme or lifecycle), and signs only
// through ca: no private key is held here.
package revocation
