// Package revocation publishes revocation status to relying parties: CRLs
// (RFC 5280 §5) and the OCSP responder (RFC 6960, RFC 5019), served on the
// plain HTTP listener, with that listener's other handlers: /roots.pem
// (RootsHandler) and the issuer certificates AIA points to, /issuer/{id}.crt
// (IssuerHandler).
//
// It imports ca and store only, never acme or lifecycle. It signs only
// through ca (ca.CRLSigner.CRLSignature for CRLs, ca.OCSPSigner for OCSP
// responses): it never holds a key. It keeps its own records in store: the
// latest CRL of each issuer and shard, with its number, in crl_state, and
// the pre-signed OCSP responses in ocsp_responses. What it reads is declared
// by OCSPStore, CRLStore and OfflineStore, what one transaction writes by
// Tx (every write runs through update, which hands the callback that view).
//
// It follows the authority by itself: ca.Authority.OnStatusChange re-signs a
// certificate's OCSP responses and marks its CRL after a revocation, and
// ca.Authority.OnIssuersChange publishes CRLs and OCSP responses for a new
// intermediate (and drops a destroyed one's) before the rotation returns.
//
// The root's key is offline, so this package never signs the root's CRL:
// ca.Init and `sigil ca root-crl` (ca.SignRootCRL) sign and store it, and
// OfflineCRLs serves it from crl_state at /crl/{root}.crl, reloading it
// periodically and warning, with a metric, as its nextUpdate nears.
//
// OCSP invariants:
//   - GETs, and POSTs without a nonce, are answered from pre-signed
//     responses: a cache hit signs nothing and queries nothing. Only with
//     ocsp.nonce does a POST carrying a nonce get a response signed for it
//     (ca.OCSPSigner.SignWithNonce), rate-limited and never cached or stored.
//   - One responder key is active: restarts reuse it, it is replaced at the
//     last refresh before its certificate's half-life (every response is then
//     re-signed), and ca retires the old key and destroys it once its
//     certificate has expired (ca.Authority.TidyOCSPKeys, at every refresh).
//   - The stored responses are a copy, never an authority: one is served
//     after a restart only if it verifies under its issuer, answers for its
//     row's serial and CertID hash, and says what the certificate's record
//     says; anything else is re-signed.
//   - A full disk (store.ErrFull) stops the store copy, never the responder:
//     responses are signed and served from memory and stored at a later
//     refresh, one bounded batch per issuer and refresh.
//
// CRL invariants:
//   - CRL numbers grow by one per (issuer, shard) and are stored in the same
//     transaction as the CRL they number; a CRL is served only after it is
//     stored, so a restart never serves a lower number.
//   - A CRL is built from a stream of store rows into DER (see entryEncoder):
//     memory grows with the encoded CRL, never with a slice of entries.
//   - A revoked certificate is listed until a CRL whose predecessor's
//     thisUpdate is after its notAfter: it appears at least once past expiry,
//     then is dropped.
//   - With partitions, shard N's CRL carries a critical Issuing Distribution
//     Point whose URI is, byte for byte, the CRL distribution point of the
//     certificates assigned to shard N (ca.CRLSigner.CRLURL).
package revocation
