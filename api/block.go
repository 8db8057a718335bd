package api

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"

	"github.com/sigil-ca/sigil/ca"
)

// BlockKeyRequest is the body of POST /v1/keys/block: a PEM public key, or
// a certificate or CSR whose key is to be blocked.
type BlockKeyRequest struct {
	PublicKey string `json:"public_key"`
}

// BlockKeyResponse names the blocked key and the certificates revoked with it.
type BlockKeyResponse struct {
	SPKISHA256 string   `json:"spki_sha256"`
	Revoked    []string `json:"revoked"`
}

// ParsePublicKeyPEM reads the first PUBLIC KEY, CERTIFICATE or CERTIFICATE
// REQUEST block of data and returns its public key.
func ParsePublicKeyPEM(data []byte) (crypto.PublicKey, error) {
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, fmt.Errorf("no PUBLIC KEY, CERTIFICATE or CERTIFICATE REQUEST PEM block")
		}
		switch b.Type {
		case "PUBLIC KEY":
			pub, err := x509.ParsePKIXPublicKey(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("public key: %w", err)
			}
			return pub, nil
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("certificate: %w", err)
			}
			return c.PublicKey, nil
		case "CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST":
			c, err := x509.ParseCertificateRequest(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("certificate request: %w", err)
			}
			return c.PublicKey, nil
		}
	}
}

func (api *API) blockKey(w http.ResponseWriter, r *http.Request, p ca.Principal) error {
	var req BlockKeyRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	pub, err := ParsePublicKeyPEM([]byte(req.PublicKey))
	if err != nil {
		return &ca.Error{Kind: ca.Malformed, Detail: "public_key: " + err.Error()}
	}
	h, err := ca.KeyHash(pub)
	if err != nil {
		return &ca.Error{Kind: ca.Malformed, Detail: "public_key: " + err.Error()}
	}
	revoked, err := api.admin.BlockKey(r.Context(), p.Actor(), pub)
	if err != nil {
		return err
	}
	out := BlockKeyResponse{SPKISHA256: fmt.Sprintf("%x", h), Revoked: []string{}}
	for _, c := range revoked {
		out.Revoked = append(out.Revoked, c.Serial)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
