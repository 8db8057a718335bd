package acme

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/store"
)

// acmeRevocationReasons are the reasons a subscriber may give (RFC 8555
// §7.6 leaves the choice to the CA). cACompromise, aACompromise,
// certificateHold and privilegeWithdrawn are the CA's own decisions.
var acmeRevocationReasons = []int{ca.ReasonUnspecified, ca.ReasonKeyCompromise, ca.ReasonAffiliationChanged,
	ca.ReasonSuperseded, ca.ReasonCessationOfOperation}

type revokeReq struct {
	Certificate string `json:"certificate"`
	Reason      *int   `json:"reason"`
}

// revokeCert revokes a certificate (RFC 8555 §7.6). The request is signed
// either by an account (kid) that was issued the certificate or holds valid
// authorizations for all its identifiers, or by the certificate's own key
// (jwk), which proves possession whatever account asked for it.
func (s *Server) revokeCert(w http.ResponseWriter, r *http.Request) error {
	p, err := s.readPost(r, true)
	if err != nil {
		return err
	}
	cert, reason, err := parseRevokePayload(p.jws.Payload)
	if err != nil {
		return err
	}
	rec, err := s.ca.Certificate(r.Context(), ca.SerialString(cert.SerialNumber))
	if ca.KindOf(err) == ca.NotFound || err == nil && !bytes.Equal(rec.DER, cert.Raw) {
		// Same answer whether the serial is unknown or the bytes differ:
		// only this CA's exact certificates can be revoked here.
		return Malformed("this CA did not issue that certificate").WithStatus(http.StatusNotFound)
	}
	if err != nil {
		return err
	}
	actor, err := s.revocationActor(r, p, cert, rec)
	if err != nil {
		return err
	}
	_, err = s.ca.Revoke(r.Context(), ca.RevokeRequest{Serial: rec.Serial, Reason: reason, Actor: actor, Channel: ca.ChannelACME})
	if ca.KindOf(err) == ca.Conflict {
		return AlreadyRevoked(err.(*ca.Error).Detail)
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// parseRevokePayload reads a revokeCert payload (RFC 8555 §7.6): the
// certificate and the reason (unspecified if absent). Errors are *Problem.
func parseRevokePayload(payload []byte) (*x509.Certificate, int, error) {
	var req revokeReq
	if err := decodePayload(payload, &req); err != nil {
		return nil, 0, err
	}
	der, err := base64.RawURLEncoding.DecodeString(req.Certificate)
	if err != nil || len(der) == 0 {
		return nil, 0, Malformed("certificate must be the base64url (no padding) DER of the certificate")
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, 0, Malformed("certificate does not parse: %v", err)
	}
	if cert.SerialNumber.Sign() <= 0 {
		return nil, 0, Malformed("certificate has a non-positive serial number")
	}
	reason := ca.ReasonUnspecified
	if req.Reason != nil {
		reason = *req.Reason
		if !slices.Contains(acmeRevocationReasons, reason) {
			return nil, 0, BadRevocationReason(fmt.Sprintf("reason %d is not one an ACME client may give; use 0 (unspecified), 1 (keyCompromise), 3 (affiliationChanged), 4 (superseded) or 5 (cessationOfOperation)", reason))
		}
	}
	return cert, reason, nil
}

// revocationActor checks that the signer may revoke cert and names it for
// the audit log.
func (s *Server) revocationActor(r *http.Request, p *post, cert *x509.Certificate, rec store.CertRecord) (string, error) {
	if p.account == nil {
		// Signed with a jwk: it must be the certificate's own key.
		pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
		if !ok || !pub.Equal(p.key.Key) {
			return "", Unauthorized("the request is signed with a jwk that is not the certificate's key")
		}
		thumb, err := Thumbprint(p.key)
		if err != nil {
			return "", Malformed("bad certificate key")
		}
		return "acme:certkey:" + thumb, nil
	}
	actor := "acme:" + p.account.ID
	if rec.Requester == p.account.Requester {
		return actor, nil
	}
	// RFC 8555 §7.6: an account holding authorizations for every identifier
	// in the certificate may revoke it too.
	now := s.clk.Now()
	ids := make([]store.ACMEIdentifier, 0, len(cert.DNSNames)+len(cert.IPAddresses))
	for _, d := range cert.DNSNames {
		ids = append(ids, store.ACMEIdentifier{Type: "dns", Value: d})
	}
	for _, ip := range cert.IPAddresses {
		ids = append(ids, store.ACMEIdentifier{Type: "ip", Value: ip.String()}) // as normalizeIdentifiers stores it
	}
	if len(ids) == 0 {
		return "", Unauthorized("this account was not issued the certificate")
	}
	for _, id := range ids {
		base, wildcard := strings.CutPrefix(id.Value, "*.")
		_, err := s.st.ACMEReusableAuthz(r.Context(), p.account.ID, store.ACMEIdentifier{Type: id.Type, Value: base}, wildcard, now)
		if errors.Is(err, store.ErrNotFound) {
			return "", Unauthorized(fmt.Sprintf("this account was not issued the certificate and holds no valid authorization for %s", id.Value))
		}
		if err != nil {
			return "", fmt.Errorf("find authorization: %w", err)
		}
	}
	return actor, nil
}
