package ca

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"net"
	"net/mail"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/store"
)

// HeldKeyIssuer is the authority as lifecycle/managed uses it: it
// certifies keys the authority generates and holds for others. There is no
// CSR, so the caller checks the names with NamesFromSANs and the key type
// with CheckKeyType before it generates the key (GenerateKey), then signs
// with SignLeaf and records with Record, the issuance primitive every path
// shares; it revokes with its own rows through RevokeRecords, retires and
// destroys keys inside the caller's transaction, and delivers a key to its
// identity through ExportKey.
type HeldKeyIssuer struct{ a *Authority }

// HeldKeys returns the authority as the issuer of the keys it holds.
func (a *Authority) HeldKeys() *HeldKeyIssuer { return &HeldKeyIssuer{a: a} }

// Intermediate returns the certificate currently issuing.
func (h *HeldKeyIssuer) Intermediate() Issuer { return h.a.Intermediate() }

// CheckKeyNotBlocked is Authority.CheckKeyNotBlocked.
func (h *HeldKeyIssuer) CheckKeyNotBlocked(ctx context.Context, pub crypto.PublicKey) error {
	return h.a.CheckKeyNotBlocked(ctx, pub)
}

// Record is the issuance primitive (see Issuance).
func (h *HeldKeyIssuer) Record(ctx context.Context, iss Issuance) (store.CertRecord, error) {
	return h.a.record(ctx, iss)
}

// RevokeRecords revokes certificates with the caller's rows (see Revocation).
func (h *HeldKeyIssuer) RevokeRecords(ctx context.Context, r Revocation) ([]store.CertRecord, error) {
	return h.a.revokeRecords(ctx, r)
}

// AuditRefusal is Authority.AuditRefusal.
func (h *HeldKeyIssuer) AuditRefusal(ctx context.Context, r Refusal) { h.a.AuditRefusal(ctx, r) }

// RecordUnauthenticatedRefusal is Authority.RecordUnauthenticatedRefusal.
func (h *HeldKeyIssuer) RecordUnauthenticatedRefusal(ctx context.Context, r UnauthenticatedRefusal) {
	h.a.RecordUnauthenticatedRefusal(ctx, r)
}

var managedNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// CheckManagedName refuses names that cannot name a managed certificate
// (they appear in URL paths, audit targets and token scopes).
func CheckManagedName(name string) error {
	if !managedNameRE.MatchString(name) {
		return errorf(Malformed, "managed certificate name %q: want 1 to 64 of A-Z a-z 0-9 . _ -, starting with a letter or digit", name)
	}
	return nil
}

// NamesFromSANs sorts SANs into their types and checks them as a CSR's
// names are checked; a bad name is Malformed. The common name is the first
// DNS name (if short enough).
func NamesFromSANs(sans []string) (Names, string, error) {
	if len(sans) == 0 {
		return Names{}, "", errorf(Malformed, "a managed certificate needs at least one subject alternative name")
	}
	req := &x509.CertificateRequest{}
	for _, s := range sans {
		s = strings.TrimSpace(s)
		switch {
		case s == "":
			return Names{}, "", errorf(Malformed, "empty subject alternative name")
		case net.ParseIP(s) != nil:
			req.IPAddresses = append(req.IPAddresses, net.ParseIP(s))
		case strings.Contains(s, "://"):
			u, err := url.Parse(s)
			if err != nil {
				return Names{}, "", errorf(Malformed, "URI %q: %v", s, err)
			}
			req.URIs = append(req.URIs, u)
		case strings.Contains(s, "@"):
			if _, err := mail.ParseAddress(s); err != nil {
				return Names{}, "", errorf(Malformed, "email address %q is malformed", s)
			}
			req.EmailAddresses = append(req.EmailAddresses, s)
		default:
			req.DNSNames = append(req.DNSNames, s)
		}
	}
	names, _, err := csrNames(req)
	if err != nil {
		var e *Error
		if errors.As(err, &e) && e.Kind == BadCSR {
			return Names{}, "", &Error{Kind: Malformed, Detail: e.Detail, Sub: e.Sub}
		}
		return Names{}, "", err
	}
	cn := ""
	if len(names.DNS) > 0 && len(names.DNS[0]) <= 64 {
		cn = names.DNS[0]
	}
	return names, cn, nil
}

// CheckKeyType parses a key type ("" is ecdsa-p256) and checks that the
// profile takes it: an unknown profile or a key it refuses is Rejected, a
// key type that does not parse Malformed.
func (h *HeldKeyIssuer) CheckKeyType(profile, keyType string) (keystore.Algorithm, error) {
	prof := h.a.profile(profile)
	if prof == nil {
		return "", errorf(Rejected, "unknown profile %q", profile)
	}
	if keyType == "" {
		keyType = string(keystore.ECDSAP256)
	}
	alg, err := keystore.ParseAlgorithm(keyType)
	if err != nil {
		return "", errorf(Malformed, "%v", err)
	}
	bits := 0
	if n, ok := strings.CutPrefix(string(alg), "rsa-"); ok {
		bits, _ = strconv.Atoi(n)
	}
	if err := prof.checkKey(alg, bits); err != nil {
		return "", errorf(Rejected, "%v", err)
	}
	return alg, nil
}

// LeafRequest asks for a certificate for a public key the authority holds
// the private half of.
type LeafRequest struct {
	Public   crypto.PublicKey
	Names    Names  // from NamesFromSANs
	CN       string // from NamesFromSANs
	Profile  string
	Validity time.Duration // 0: the profile default
	// Requester, Channel and Replaces are recorded (see store.CertRecord).
	Requester, Channel, Replaces string
}

// SignLeaf applies the profile's name policy and validity to req, then
// builds, lints and signs the certificate with the active intermediate. It
// returns the record for Record: nothing is stored. Refusals are *Error
// values; the caller audits them. The key's blocklist is the caller's to
// check (CheckKeyNotBlocked): a freshly generated key cannot be on it.
func (h *HeldKeyIssuer) SignLeaf(ctx context.Context, req LeafRequest) (store.CertRecord, error) {
	a := h.a
	prof := a.profile(req.Profile)
	if prof == nil {
		return store.CertRecord{}, errorf(Rejected, "unknown profile %q", req.Profile)
	}
	alg, err := keystore.AlgorithmOf(req.Public)
	if err != nil {
		return store.CertRecord{}, internal("key algorithm", err)
	}
	keyHash, err := KeyHash(req.Public)
	if err != nil {
		return store.CertRecord{}, internal("key hash", err)
	}
	return a.buildLeaf(a.active.Load(), prof, leafRequest{pub: req.Public, alg: alg, keyHash: keyHash, names: req.Names,
		cn: req.CN, validity: req.Validity, profile: req.Profile, requester: req.Requester, channel: req.Channel,
		replaces: req.Replaces})
}

// GenerateKey creates and seals a key of purpose; the caller records it
// (Issuance.NewKey). The private key is returned for signing and goes no
// further.
func (h *HeldKeyIssuer) GenerateKey(ctx context.Context, purpose string, alg keystore.Algorithm) (crypto.Signer, store.KeyRecord, error) {
	return h.a.keys.Generate(ctx, purpose, alg)
}

// RetireKey retires the held key rec inside tx, with its key.retired event
// (detail added): it certifies nothing new (see keystore.Retire).
func (h *HeldKeyIssuer) RetireKey(tx store.Tx, rec store.KeyRecord, actor string, at time.Time, detail map[string]string) error {
	return keystore.Retire(tx, rec, actor, at, detail)
}

// DestroyKey crypto-shreds the retired held key rec inside tx, with its
// key.destroyed event (see keystore.Destroy).
func (h *HeldKeyIssuer) DestroyKey(tx store.Tx, rec store.KeyRecord, actor, reason string, at time.Time) error {
	return keystore.Destroy(tx, rec, actor, reason, at)
}

// ExportKey decrypts a held key as PKCS#8 DER for delivery to the identity
// it belongs to, audited (key.exported, with detail) in one transaction
// with inTx before it is returned. The caller zeroes it after use.
func (h *HeldKeyIssuer) ExportKey(ctx context.Context, keyID, actor string, detail map[string]string, inTx func(tx store.Tx) error) ([]byte, error) {
	return h.a.keys.Export(ctx, keyID, actor, detail, inTx)
}
