package api

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/sigil-ca/sigil/ca"
)

// SignRequest is the body of POST /v1/sign.
type SignRequest struct {
	CSR      string `json:"csr"`                // PEM
	Profile  string `json:"profile"`            // issuance profile name
	Validity string `json:"validity,omitempty"` // Go duration, e.g. "720h"; empty: the profile default
}

// SignResponse is the answer to POST /v1/sign.
type SignResponse struct {
	Serial      string    `json:"serial"`
	Issuer      string    `json:"issuer"`
	Profile     string    `json:"profile"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	Certificate string    `json:"certificate"` // PEM leaf
	Chain       string    `json:"chain"`       // PEM leaf then intermediates
}

// ParsedSign is a decoded, syntax-checked sign request.
type ParsedSign struct {
	CSR      *x509.CertificateRequest
	Profile  string
	Validity time.Duration
}

// ParseSignRequest decodes and checks a sign request body. Every failure is
// a *ca.Error the caller can show.
func ParseSignRequest(body io.Reader) (ParsedSign, error) {
	var req SignRequest
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return ParsedSign{}, bodyError(err)
	}
	if err := checkEOF(dec); err != nil {
		return ParsedSign{}, err
	}
	if strings.TrimSpace(req.Profile) == "" {
		return ParsedSign{}, &ca.Error{Kind: ca.Malformed, Detail: "profile is required"}
	}
	if req.CSR == "" {
		return ParsedSign{}, &ca.Error{Kind: ca.Malformed, Detail: "csr is required"}
	}
	var validity time.Duration
	if req.Validity != "" {
		v, err := time.ParseDuration(req.Validity)
		if err != nil || v <= 0 {
			return ParsedSign{}, &ca.Error{Kind: ca.Malformed, Detail: "validity must be a positive duration such as \"720h\""}
		}
		validity = v
	}
	if !strings.Contains(req.CSR, "-----BEGIN") {
		return ParsedSign{}, &ca.Error{Kind: ca.BadCSR, Detail: "csr must be PEM encoded"}
	}
	csr, err := ca.ParseCSR([]byte(req.CSR))
	if err != nil {
		return ParsedSign{}, err
	}
	return ParsedSign{CSR: csr, Profile: req.Profile, Validity: validity}, nil
}

func (api *API) sign(w http.ResponseWriter, r *http.Request, p ca.Principal) error {
	req, err := func() (ParsedSign, error) {
		if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
			return ParsedSign{}, &ca.Error{Kind: ca.Malformed, Detail: "Content-Type must be application/json"}
		}
		return ParseSignRequest(r.Body)
	}()
	if err != nil {
		// Refusals are audited even when the body never became a request.
		api.issuer.RecordRefusal(r.Context(), ca.SignRequest{Requester: p.Actor(), Channel: ca.ChannelAPI}, err)
		return err
	}
	sr := ca.SignRequest{CSR: req.CSR, Profile: req.Profile, Validity: req.Validity, Requester: p.Actor(), Channel: ca.ChannelAPI}
	if p.Role == ca.RoleIssuer {
		sr.AllowedProfiles = p.Profiles
		if sr.AllowedProfiles == nil {
			sr.AllowedProfiles = []string{}
		}
	}
	iss, err := api.issuer.Sign(r.Context(), sr)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, SignResponse{
		Serial: iss.Record.Serial, Issuer: iss.Record.IssuerID, Profile: iss.Record.Profile,
		NotBefore: iss.Record.NotBefore, NotAfter: iss.Record.NotAfter,
		Certificate: pemCert(iss.Chain[0]), Chain: pemChain(iss.Chain),
	})
	return nil
}

func pemCert(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func pemChain(chain [][]byte) string {
	var b bytes.Buffer
	for _, der := range chain {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	return b.String()
}
