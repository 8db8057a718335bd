package managed

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

// BundleRequest asks for the current bundle of a managed certificate. It
// carries one credential: an authenticated bearer token, or the
// certificate the client presented in the TLS handshake (whose
// CertificateVerify proved that the client holds its key).
type BundleRequest struct {
	Name       string
	Principal  *ca.Principal // a bearer token, authenticated; nil if none
	ClientCert []byte        // DER of the TLS client certificate; nil if none
	// Source is the client address, by which refusals of unauthenticated
	// requests are summed (see RecordUnauthenticatedRefusal).
	Source string
}

// Bundle is a managed certificate's current chain and private key. KeyPEM
// is secret: callers send it to the identity it belongs to and then zero
// it; Bundle never prints it (String, LogValue).
type Bundle struct {
	Name      string
	Version   int
	Serial    string
	NotBefore time.Time
	NotAfter  time.Time
	ChainPEM  []byte // leaf first, then its issuer
	KeyPEM    []byte // PKCS#8 "PRIVATE KEY"
}

// String identifies the bundle without its key.
func (b *Bundle) String() string {
	return fmt.Sprintf("Bundle{%s v%d %s key:REDACTED}", b.Name, b.Version, b.Serial)
}

// LogValue keeps the key out of logs.
func (b *Bundle) LogValue() slog.Value {
	return slog.GroupValue(slog.String("managed", b.Name), slog.Int("version", b.Version),
		slog.String("serial", b.Serial), slog.String("key", "REDACTED"))
}

// Zero erases the private key.
func (b *Bundle) Zero() { clear(b.KeyPEM) }

// Bundle returns the current chain and private key of the managed
// certificate req.Name to the identity it belongs to, and to no one else
// (DESIGN.md: a private key leaves the CA only to the identity it belongs
// to). Allowed credentials:
//
//   - a certificate of that managed name presented over mTLS: its DER must
//     equal the record of its current or previous version, unexpired and
//     unrevoked (the renewal of a server that kept its old certificate);
//   - a token of role managed scoped to that name.
//
// Every other credential is Forbidden, an admin token included: operators
// manage managed certificates but never see their keys. Refusals are
// audited (managed.bundle.refused); a request with no credential, or with a
// certificate this CA did not issue, is Unauthorized and, like a request
// without a valid token, only counted (RecordUnauthenticatedRefusal). Every
// bundle delivered is audited in one transaction with the key's export
// (key.exported, managed.bundle.fetched: who, which version and serial)
// before it is returned.
func (s *Service) Bundle(ctx context.Context, req BundleRequest) (*Bundle, error) {
	actor, via, err := bundleCredential(req)
	var b *Bundle
	if err == nil {
		b, err = s.bundle(ctx, req, actor, via)
	}
	if err != nil {
		switch k := ca.KindOf(err); {
		case via != "" && (k == ca.Forbidden || k == ca.NotFound || k == ca.Malformed):
			s.auditBundleRefusal(ctx, req.Name, actor, via, err)
		case k == ca.Internal:
			s.log.ErrorContext(ctx, "managed bundle failed", "managed", req.Name, "actor", actor, "error", err)
		default:
			s.ca.RecordUnauthenticatedRefusal(ctx, ca.UnauthenticatedRefusal{Surface: "managed.bundle", Source: req.Source,
				Method: "GET", Path: "/v1/managed/" + clip(req.Name, 64) + "/bundle", Err: err})
		}
		return nil, err
	}
	return b, nil
}

// bundleCredential names the caller for the audit log.
func bundleCredential(req BundleRequest) (actor, via string, err error) {
	switch {
	case req.Principal != nil:
		return req.Principal.Actor(), "token", nil
	case len(req.ClientCert) > 0:
		c, err := x509.ParseCertificate(req.ClientCert)
		if err != nil {
			return "", "mtls", errorf(ca.Unauthorized, "the client certificate cannot be parsed")
		}
		return "cert:" + ca.SerialString(c.SerialNumber), "mtls", nil
	}
	return "", "", errorf(ca.Unauthorized, "present a certificate of the managed identity (mTLS) or a token scoped to it")
}

func (s *Service) bundle(ctx context.Context, req BundleRequest, actor, via string) (*Bundle, error) {
	if err := ca.CheckManagedName(req.Name); err != nil {
		return nil, err
	}
	if p := req.Principal; p != nil {
		switch {
		case p.Role == ca.RoleManaged && p.Managed == req.Name:
		case p.Role == ca.RoleAdmin:
			return nil, errorf(ca.Forbidden, "an admin token may not fetch a managed private key: it is delivered only to "+
				"its own identity (its certificate over mTLS, or a token of role managed scoped to it)")
		default:
			return nil, errorf(ca.Forbidden, "this token may not fetch the bundle of %q", req.Name)
		}
	}
	var presented store.ManagedVersion
	if p := req.Principal; p == nil {
		var err error
		if presented, err = s.checkClientCert(ctx, req.Name, req.ClientCert); err != nil {
			return nil, err
		}
	}
	m, err := s.active(ctx, req.Name)
	if err != nil {
		return nil, err
	}
	if req.Principal == nil && presented.Version < m.Version-1 {
		return nil, errorf(ca.Forbidden, "the client certificate is version %d of %q; only the current (%d) or previous version may fetch the bundle",
			presented.Version, req.Name, m.Version)
	}
	// The record, certificate and key are separate reads: a renewal that
	// commits between them retires the key read as current. Read again,
	// so that the caller gets the old or the new pair whole, never an
	// error (issue 15). A retry follows only a renewal that committed
	// during this fetch, so the bound is reached only under a storm of them.
	for attempt := 1; ; attempt++ {
		chain, der, err := s.bundlePair(ctx, m, actor, via)
		if err == nil {
			keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
			clear(der)
			s.log.InfoContext(ctx, "managed bundle delivered", "managed", m.Name, "version", m.Version, "serial", m.Serial,
				"key_id", m.KeyID, "actor", actor, "via", via, "attempts", attempt)
			return &Bundle{Name: m.Name, Version: m.Version, Serial: m.Serial, NotBefore: chain.notBefore, NotAfter: chain.notAfter,
				ChainPEM: chain.pem, KeyPEM: keyPEM}, nil
		}
		next, nerr := s.active(ctx, req.Name)
		if nerr != nil {
			return nil, nerr // deleted meanwhile: NotFound, as for a later fetch
		}
		if attempt >= maxBundleAttempts || (next.Version == m.Version && next.KeyID == m.KeyID) {
			return nil, err
		}
		m = next
	}
}

// maxBundleAttempts bounds how often a bundle is read again after a
// concurrent renewal replaced the pair being read.
const maxBundleAttempts = 5

// bundleChain is the PEM chain of one managed version and its validity.
type bundleChain struct {
	pem                 []byte
	notBefore, notAfter time.Time
}

// bundlePair reads the chain of m's current certificate and exports its
// key, audited in one transaction with managed.bundle.fetched.
func (s *Service) bundlePair(ctx context.Context, m store.ManagedRecord, actor, via string) (bundleChain, []byte, error) {
	cur, err := s.st.Certificate(ctx, m.Serial)
	if err != nil {
		return bundleChain{}, nil, internal("load current managed certificate", err)
	}
	iss, err := s.st.Issuer(ctx, cur.IssuerID)
	if err != nil {
		return bundleChain{}, nil, internal("load issuer", err)
	}
	chain := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cur.DER})
	chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: iss.CertDER})...)
	detail := map[string]string{"managed": m.Name, "version": strconv.Itoa(m.Version), "serial": m.Serial, "via": via}
	der, err := s.ca.ExportKey(ctx, m.KeyID, actor, detail, func(tx store.Tx) error {
		_, err := Tx(tx).AppendAudit(audit.Event{Time: s.clk.Now().UTC(), Actor: actor, Action: audit.ActionManagedBundleFetched, Target: m.Name,
			Detail: map[string]string{"version": strconv.Itoa(m.Version), "serial": m.Serial, "key": m.KeyID, "via": via}})
		return err
	})
	if err != nil {
		return bundleChain{}, nil, internal("export managed key", err)
	}
	return bundleChain{pem: chain, notBefore: cur.NotBefore.UTC(), notAfter: cur.NotAfter.UTC()}, der, nil
}

// checkClientCert accepts der only if it is, byte for byte, a recorded
// certificate of the managed name, unexpired and unrevoked; it returns that
// version. The TLS handshake proved possession of its key. A certificate
// this CA never issued is Unauthorized (like a malformed token, only
// logged, so that scanners cannot grow the audit log); one of another of
// its identities is Forbidden.
func (s *Service) checkClientCert(ctx context.Context, name string, der []byte) (store.ManagedVersion, error) {
	unknown := errorf(ca.Unauthorized, "the client certificate was not issued by this CA")
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return store.ManagedVersion{}, unknown
	}
	serial := ca.SerialString(c.SerialNumber)
	rec, err := s.st.Certificate(ctx, serial)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.ManagedVersion{}, unknown
	case err != nil:
		return store.ManagedVersion{}, internal("load certificate", err)
	case !bytes.Equal(rec.DER, der):
		return store.ManagedVersion{}, unknown
	}
	deny := errorf(ca.Forbidden, "the client certificate is not a certificate of managed %q", name)
	v, err := s.st.ManagedVersionBySerial(ctx, serial)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.ManagedVersion{}, deny
	case err != nil:
		return store.ManagedVersion{}, internal("load managed version", err)
	case v.Name != name || v.IssuerID != rec.IssuerID:
		return store.ManagedVersion{}, deny
	}
	now := s.clk.Now()
	switch {
	case !rec.RevokedAt.IsZero():
		return store.ManagedVersion{}, errorf(ca.Forbidden, "the client certificate (version %d of %q) is revoked", v.Version, name)
	case now.Before(rec.NotBefore) || !now.Before(rec.NotAfter):
		return store.ManagedVersion{}, errorf(ca.Forbidden, "the client certificate (version %d of %q) is not valid now", v.Version, name)
	}
	return v, nil
}

// auditBundleRefusal records a refused bundle request. Best effort: a
// failure is logged.
func (s *Service) auditBundleRefusal(ctx context.Context, name, actor, via string, err error) {
	target := name
	if ca.CheckManagedName(name) != nil {
		target = ""
	}
	s.ca.AuditRefusal(ctx, ca.Refusal{Action: audit.ActionManagedBundleRefused, Actor: actor, Target: target,
		Detail: map[string]string{"via": via}, Err: err, Op: "managed bundle", LogAttrs: []any{"managed", name}})
}

// clip shortens untrusted input for a log line or audit path.
func clip(s string, n int) string {
	if len(s) > n {
		s = s[:n] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}
