package ui

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/store"
)

// certRow is a certificate record as lists show it.
type certRow struct {
	Serial, Subject, Profile, Requester, Channel, KeyAlgorithm string
	SANs                                                       []string
	Issued, NotBefore, NotAfter, RevokedAt, InvalidityDate     time.Time
	Archived                                                   time.Time
	Status                                                     string // valid, expired or revoked
	Reason                                                     string // revocation reason name
	IssuerID, Replaces                                         string
}

func toRow(c store.CertRecord, now time.Time) certRow {
	r := certRow{Serial: c.Serial, Subject: c.Subject, Profile: c.Profile, Requester: c.Requester, Channel: c.Channel,
		KeyAlgorithm: c.KeyAlgorithm, SANs: c.SANs, Issued: c.Created, NotBefore: c.NotBefore, NotAfter: c.NotAfter,
		RevokedAt: c.RevokedAt, Archived: c.Archived, IssuerID: c.IssuerID, Replaces: c.Replaces}
	switch {
	case !c.RevokedAt.IsZero():
		r.Status, r.Reason, r.InvalidityDate = "revoked", ca.ReasonName(c.RevokeReason), c.InvalidityDate
	case !now.Before(c.NotAfter):
		r.Status = "expired"
	default:
		r.Status = "valid"
	}
	return r
}

// decoded is what the detail page shows of the certificate itself.
type decoded struct {
	Version            int
	SubjectDN          string
	IssuerDN           string
	SignatureAlgorithm string
	PublicKey          string
	DNSNames, IPs      []string
	Emails, URIs       []string
	KeyUsage           []string
	ExtKeyUsage        []string
	IsCA               bool
	MaxPathLen         string
	SKI, AKI           string
	OCSP, IssuingURLs  []string
	CRLs, Policies     []string
	SHA256             string
	SPKISHA256         string
	MustStaple         bool
}

// chainCert is one issuer certificate above the leaf.
type chainCert struct {
	ID, Kind, State string
	Subject         string
	NotAfter        time.Time
	SHA256          string
}

func decode(der []byte) (decoded, error) {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return decoded{}, fmt.Errorf("parse certificate: %w", err)
	}
	d := decoded{
		Version: c.Version, SubjectDN: c.Subject.String(), IssuerDN: c.Issuer.String(),
		SignatureAlgorithm: c.SignatureAlgorithm.String(), PublicKey: describeKey(c.PublicKey),
		DNSNames: c.DNSNames, Emails: c.EmailAddresses, KeyUsage: keyUsages(c.KeyUsage), IsCA: c.IsCA,
		OCSP: c.OCSPServer, IssuingURLs: c.IssuingCertificateURL, CRLs: c.CRLDistributionPoints,
		SKI: colonHex(c.SubjectKeyId), AKI: colonHex(c.AuthorityKeyId),
		SHA256: fingerprint(c.Raw), SPKISHA256: fingerprint(c.RawSubjectPublicKeyInfo),
	}
	for _, ip := range c.IPAddresses {
		d.IPs = append(d.IPs, ip.String())
	}
	for _, u := range c.URIs {
		d.URIs = append(d.URIs, u.String())
	}
	for _, e := range c.ExtKeyUsage {
		d.ExtKeyUsage = append(d.ExtKeyUsage, extKeyUsageName(e))
	}
	for _, o := range c.UnknownExtKeyUsage {
		d.ExtKeyUsage = append(d.ExtKeyUsage, o.String())
	}
	for _, p := range c.Policies {
		d.Policies = append(d.Policies, p.String())
	}
	if c.BasicConstraintsValid && c.IsCA {
		switch {
		case c.MaxPathLen > 0 || c.MaxPathLenZero:
			d.MaxPathLen = fmt.Sprint(c.MaxPathLen)
		default:
			d.MaxPathLen = "unlimited"
		}
	}
	for _, ext := range c.Extensions {
		// RFC 7633 TLS feature extension: status_request (5) is OCSP Must-Staple.
		if ext.Id.String() == "1.3.6.1.5.5.7.1.24" {
			d.MustStaple = true
		}
	}
	return d, nil
}

func describeKey(pub any) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d bits", k.N.BitLen())
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", pub)
}

func keyUsages(ku x509.KeyUsage) []string {
	names := []struct {
		bit  x509.KeyUsage
		name string
	}{
		{x509.KeyUsageDigitalSignature, "digitalSignature"}, {x509.KeyUsageContentCommitment, "contentCommitment"},
		{x509.KeyUsageKeyEncipherment, "keyEncipherment"}, {x509.KeyUsageDataEncipherment, "dataEncipherment"},
		{x509.KeyUsageKeyAgreement, "keyAgreement"}, {x509.KeyUsageCertSign, "keyCertSign"},
		{x509.KeyUsageCRLSign, "cRLSign"}, {x509.KeyUsageEncipherOnly, "encipherOnly"},
		{x509.KeyUsageDecipherOnly, "decipherOnly"},
	}
	var out []string
	for _, n := range names {
		if ku&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	return out
}

func extKeyUsageName(e x509.ExtKeyUsage) string {
	switch e {
	case x509.ExtKeyUsageServerAuth:
		return "serverAuth"
	case x509.ExtKeyUsageClientAuth:
		return "clientAuth"
	case x509.ExtKeyUsageCodeSigning:
		return "codeSigning"
	case x509.ExtKeyUsageEmailProtection:
		return "emailProtection"
	case x509.ExtKeyUsageTimeStamping:
		return "timeStamping"
	case x509.ExtKeyUsageOCSPSigning:
		return "OCSPSigning"
	case x509.ExtKeyUsageAny:
		return "any"
	}
	return fmt.Sprintf("eku(%d)", e)
}

func fingerprint(b []byte) string {
	s := sha256.Sum256(b)
	return colonHex(s[:])
}

func colonHex(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	h := hex.EncodeToString(b)
	var sb strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			sb.WriteByte(':')
		}
		sb.WriteString(h[i : i+2])
	}
	return strings.ToUpper(sb.String())
}

// chainOf walks issuer records from issuerID up to the root: the chain a
// relying party needs, leaf excluded. A loop or a missing parent ends it.
func chainOf(issuers []store.IssuerRecord, issuerID string) []store.IssuerRecord {
	byID := map[string]store.IssuerRecord{}
	for _, i := range issuers {
		byID[i.ID] = i
	}
	var out []store.IssuerRecord
	seen := map[string]bool{}
	for id := issuerID; id != "" && !seen[id]; {
		rec, ok := byID[id]
		if !ok {
			break
		}
		seen[id] = true
		out = append(out, rec)
		id = rec.ParentID
	}
	return out
}

func toChainCert(rec store.IssuerRecord) chainCert {
	cc := chainCert{ID: rec.ID, Kind: rec.Kind, State: rec.State, SHA256: fingerprint(rec.CertDER)}
	if c, err := x509.ParseCertificate(rec.CertDER); err == nil {
		cc.Subject, cc.NotAfter = c.Subject.String(), c.NotAfter
	}
	return cc
}

// detailPairs renders an audit event's detail sorted by key.
func detailPairs(d map[string]string) []string {
	out := make([]string, 0, len(d))
	for k, v := range d {
		if v == "" {
			continue
		}
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}
