package api

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/sigil-ca/sigil/ca"
)

// RenewRequest is the optional JSON body of POST /v1/renew. The caller
// authenticates with the certificate to renew, presented as its TLS client
// certificate; an empty body (or {}) renews with the same key, a CSR
// renews with the CSR's new key (rekey) for exactly the same names.
type RenewRequest struct {
	CSR string `json:"csr,omitempty"` // PEM PKCS#10
}

// renew answers POST /v1/renew with the SignResponse of /v1/sign. It takes
// no bearer token: the client certificate is the credential, checked in
// ca.Authority.Renew rather than in the TLS handshake, so that every
// refusal gets a JSON error (and, once the certificate is known to be
// this CA's, an audit event).
func (api *API) renew(w http.ResponseWriter, r *http.Request, _ ca.Principal) error {
	req := ca.RenewRequest{Source: clientAddr(r)}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		req.Certificate = r.TLS.PeerCertificates[0]
	}
	csr, err := parseRenewBody(r)
	if err != nil {
		api.renewal.RecordRenewalRefusal(r.Context(), req, err)
		return err
	}
	req.CSR = csr
	iss, err := api.renewal.Renew(r.Context(), req)
	if err != nil {
		return err
	}
	status := http.StatusCreated
	if iss.Repeated {
		status = http.StatusOK // the successor issued earlier, not a new one
	}
	writeJSON(w, status, SignResponse{
		Serial: iss.Record.Serial, Issuer: iss.Record.IssuerID, Profile: iss.Record.Profile,
		NotBefore: iss.Record.NotBefore, NotAfter: iss.Record.NotAfter,
		Certificate: pemCert(iss.Chain[0]), Chain: pemChain(iss.Chain),
	})
	return nil
}

// parseRenewBody checks the content type and parses the body.
func parseRenewBody(r *http.Request) (*x509.CertificateRequest, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return nil, &ca.Error{Kind: ca.Malformed, Detail: "Content-Type must be application/json"}
	}
	return ParseRenewRequest(r.Body)
}

// ParseRenewRequest decodes a POST /v1/renew body: nothing, {} or an empty
// csr asks to keep the key (nil CSR); a PEM CSR asks for a rekey. Every
// failure is a *ca.Error the caller can show.
func ParseRenewRequest(body io.Reader) (*x509.CertificateRequest, error) {
	var req RenewRequest
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil // no body: renew with the same key
		}
		return nil, bodyError(err)
	}
	if err := checkEOF(dec); err != nil {
		return nil, err
	}
	if req.CSR == "" {
		return nil, nil
	}
	if !strings.Contains(req.CSR, "-----BEGIN") {
		return nil, &ca.Error{Kind: ca.BadCSR, Detail: "csr must be PEM encoded"}
	}
	return ca.ParseCSR([]byte(req.CSR))
}
