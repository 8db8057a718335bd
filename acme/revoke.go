package acme

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

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

// revokeCert revokes a certificate (RFC 8555 §7.6), as Let's Encrypt
// settled on: whoever proves the certificate's key (a jwk-signed request)
// may give any reason, and only that proof makes keyCompromise block the key
// and revoke its other certificates; the account that ordered it may give
// any reason, keyCompromise included, but blocks nothing; an account that
// holds valid authorizations for every name in a certificate of this
// endpoint may revoke it too, recorded as cessationOfOperation.
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
	rv, err := s.authorizeRevocation(r.Context(), p, cert, rec, reason)
	if err != nil {
		return err
	}
	_, err = s.ca.Revoke(r.Context(), ca.RevokeRequest{Serial: rec.Serial, Reason: rv.reason, Actor: rv.actor,
		Channel: ca.ChannelACME, BlockKey: rv.keyProven})
	if e, ok := ca.AsError(err); ok && e.Kind == ca.Conflict {
		return AlreadyRevoked(e.Detail)
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

// revocation is an authorized revocation request: who asks, the reason to
// record, and whether the certificate's key itself signed.
type revocation struct {
	actor     string
	reason    int
	keyProven bool
}

// authorizeRevocation checks that the signer may revoke cert (rec is its
// record) and says how.
func (s *Server) authorizeRevocation(ctx context.Context, p *post, cert *x509.Certificate, rec store.CertRecord, reason int) (revocation, error) {
	if p.account == nil {
		// Signed with a jwk: it must be the certificate's own key.
		pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
		if !ok || !pub.Equal(p.key.Key) {
			return revocation{}, Unauthorized("the request is signed with a jwk that is not the certificate's key")
		}
		thumb, err := Thumbprint(p.key)
		if err != nil {
			return revocation{}, Malformed("bad certificate key")
		}
		return revocation{actor: "acme:certkey:" + thumb, reason: reason, keyProven: true}, nil
	}
	actor := "acme:" + p.account.ID
	o, err := s.st.ACMECertOrder(ctx, rec.Serial)
	switch {
	case err == nil && o.Endpoint == s.cfg.Name && o.AccountID == p.account.ID:
		return revocation{actor: actor, reason: reason}, nil
	case errors.Is(err, store.ErrNotFound) || err == nil && o.Endpoint != s.cfg.Name:
		// Certificates of the API, of mTLS renewal or of another endpoint
		// belong to requesters this endpoint's accounts are strangers to.
		return revocation{}, Unauthorized("this account was not issued the certificate, and it was not issued through this ACME endpoint")
	case err != nil:
		return revocation{}, fmt.Errorf("find the order of certificate %s: %w", rec.Serial, err)
	}
	// RFC 8555 §7.6: an account holding authorizations for every identifier
	// in the certificate may revoke it too; its word says only that the
	// names are no longer the subscriber's.
	ids, err := provableIdentifiers(cert)
	if err != nil {
		return revocation{}, Unauthorized("this account was not issued the certificate, and " + err.Error())
	}
	now := s.clk.Now()
	for _, id := range ids {
		base, wildcard := strings.CutPrefix(id.Value, "*.")
		_, err := s.st.ACMEReusableAuthz(ctx, p.account.ID, store.ACMEIdentifier{Type: id.Type, Value: base}, wildcard, now)
		if errors.Is(err, store.ErrNotFound) {
			return revocation{}, Unauthorized(fmt.Sprintf("this account was not issued the certificate and holds no valid authorization for %s", id.Value))
		}
		if err != nil {
			return revocation{}, fmt.Errorf("find authorization: %w", err)
		}
	}
	return revocation{actor: actor, reason: ca.ReasonCessationOfOperation}, nil
}

// provableIdentifiers returns the identifiers of cert as ACME authorizations
// name them, or an error if cert names anything an authorization cannot
// prove: a SAN other than a DNS name or an IP address (URI, email, other
// name, directory name...), or a subject common name that is not one of
// its SANs. It reads the SAN extension itself, since crypto/x509 skips the
// name types it does not know.
func provableIdentifiers(cert *x509.Certificate) ([]store.ACMEIdentifier, error) {
	var ids []store.ACMEIdentifier
	seen := map[store.ACMEIdentifier]bool{}
	for _, ext := range cert.Extensions {
		if ext.Id.String() != oidSubjectAltName {
			continue
		}
		in := cryptobyte.String(ext.Value)
		var names cryptobyte.String
		if !in.ReadASN1(&names, cbasn1.SEQUENCE) || !in.Empty() {
			return nil, errors.New("its subject alternative names do not parse")
		}
		for !names.Empty() {
			var name cryptobyte.String
			var tag cbasn1.Tag
			if !names.ReadAnyASN1(&name, &tag) {
				return nil, errors.New("its subject alternative names do not parse")
			}
			var id store.ACMEIdentifier
			switch tag {
			case cbasn1.Tag(2).ContextSpecific(): // dNSName
				id = store.ACMEIdentifier{Type: "dns", Value: strings.ToLower(string(name))}
			case cbasn1.Tag(7).ContextSpecific(): // iPAddress
				if len(name) != net.IPv4len && len(name) != net.IPv6len {
					return nil, errors.New("it names an IP range, which no authorization proves")
				}
				id = store.ACMEIdentifier{Type: "ip", Value: net.IP(name).String()} // as normalizeIdentifiers stores it
			default:
				return nil, fmt.Errorf("it names a %s, which no ACME authorization proves", generalNameType(tag))
			}
			if !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
	}
	if len(ids) == 0 {
		return nil, errors.New("it names no DNS name or IP address")
	}
	if cn := cert.Subject.CommonName; cn != "" {
		ip := net.ParseIP(cn)
		if !seen[store.ACMEIdentifier{Type: "dns", Value: strings.ToLower(cn)}] && (ip == nil || !seen[store.ACMEIdentifier{Type: "ip", Value: ip.String()}]) {
			return nil, errors.New("its common name is not one of its subject alternative names")
		}
	}
	return ids, nil
}

// generalNameType names a GeneralName choice (RFC 5280 §4.2.1.6).
func generalNameType(tag cbasn1.Tag) string {
	names := map[cbasn1.Tag]string{0: "otherName", 1: "email address (rfc822Name)", 3: "x400Address", 4: "directoryName",
		5: "ediPartyName", 6: "URI"}
	if n, ok := names[tag&^(cbasn1.Tag(0).ContextSpecific()|cbasn1.Tag(0).Constructed())]; ok {
		return n
	}
	return "name of an unknown type"
}
