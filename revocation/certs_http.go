package revocation

import (
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"strings"

	"github.com/sigil-ca/sigil/ca"
)

// RootsHandler serves GET /roots.pem: the root certificate as PEM
// (application/pem-certificate-chain), cacheable for an hour. The plain
// listener serves it for relying parties and the HTTPS one for clients
// bootstrapping trust; the root never changes under a running server.
func RootsHandler(root *x509.Certificate) http.Handler {
	body := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw})
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/pem-certificate-chain")
		w.Header().Set("Cache-Control", "max-age=3600")
		_, _ = w.Write(body)
	})
}

// IssuerLookup finds a recorded issuer by id, whatever its state.
// ca.Authority implements it.
type IssuerLookup interface {
	IssuerByID(id string) (ca.Issuer, bool)
}

// IssuerHandler serves GET /issuer/{id}.crt, the URL of the CA Issuers
// access method in issued certificates' AIA (RFC 5280 §4.2.2.1): the DER
// certificate (application/pkix-cert) of every recorded issuer, whatever its
// state, since a certificate of an intermediate rotated out still names it.
// Anything else under /issuer/ is 404.
func IssuerHandler(issuers IssuerLookup) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /issuer/{file}", func(w http.ResponseWriter, r *http.Request) {
		iss, found := issuers.IssuerByID(strings.TrimSuffix(r.PathValue("file"), ".crt"))
		if !found {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/pkix-cert")
		w.Header().Set("Cache-Control", "max-age=86400")
		_, _ = w.Write(iss.Cert.Raw)
	})
	return mux
}
