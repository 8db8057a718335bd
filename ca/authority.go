package ca

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/ca/keybackend"
	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/store"
)

// Store is what the authority reads and writes.
type Store interface {
	WithTx(ctx context.Context, fn func(tx store.Tx) error) error
	Issuers(ctx context.Context) ([]store.IssuerRecord, error)
	Certificate(ctx context.Context, serial string) (store.CertRecord, error)
	CertificateReplacing(ctx context.Context, serial string) (store.CertRecord, error)
	Certificates(ctx context.Context, f store.CertFilter) ([]store.CertRecord, store.CertCursor, error)
	ScanCertificates(ctx context.Context, f store.CertFilter, fn func(store.CertRecord) error) error
	CertificateSummary(ctx context.Context, f store.CertFilter, by store.CertGroup) ([]store.SummaryRow, int64, error)
	Token(ctx context.Context, id string) (store.TokenRecord, error)
	Tokens(ctx context.Context) ([]store.TokenRecord, error)
	Keys(ctx context.Context) ([]store.KeyRecord, error)
	AuditEvents(ctx context.Context, f store.AuditFilter) ([]audit.Event, int64, error)
	Checkpoint(ctx context.Context) error
	Checkpoints(ctx context.Context) ([]audit.Checkpoint, error)
	KeyBlocked(ctx context.Context, spkiHash []byte) (store.BlockedKey, error)
	Key(ctx context.Context, id string) (store.KeyRecord, error)
	Issuer(ctx context.Context, id string) (store.IssuerRecord, error)
	IssuerLastExpiry(ctx context.Context, issuerID string, skip ...string) (time.Time, error)
	ExpiringCertificates(ctx context.Context, from, until time.Time, after store.ExpiryCursor, limit int) ([]store.ExpiringCert, error)
	// Managed is read to scope a token to an active managed certificate.
	Managed(ctx context.Context, name string) (store.ManagedRecord, error)
	LogStore
}

// KeyUnwrapper opens wrapped keys; ca/keystore implements it.
type KeyUnwrapper interface {
	Unwrap(ctx context.Context, keyID, actor string) (crypto.Signer, error)
}

// KeyManager is the keystore as the serving authority uses it.
type KeyManager interface {
	KeyUnwrapper
	Rewrap(ctx context.Context, actor string, currentPassphrase, newPassphrase []byte, params keystore.KDFParams) (string, int, error)
	Rotate(ctx context.Context, actor string, opts keystore.RotateOptions) (string, int, error)
	// RewrapTo moves every data key to a new KEK in a KMS or under a
	// passphrase, online (keystore.Keystore.RewrapTo).
	RewrapTo(ctx context.Context, actor string, to keystore.KEKTarget, opts keystore.RotateOptions) (string, int, error)
	// CheckPassphrase reports whether passphrase opens the active KEK.
	CheckPassphrase(passphrase []byte) error
	// KEKBackend is the active KEK's backend ("passphrase", "awskms").
	KEKBackend() string
	GenerateSecret(ctx context.Context, purpose, algorithm string, size int) ([]byte, store.KeyRecord, error)
	UnwrapSecret(ctx context.Context, keyID, actor string) ([]byte, error)
	// Generate creates and seals a key; the caller stores its record.
	Generate(ctx context.Context, purpose string, alg keystore.Algorithm) (crypto.Signer, store.KeyRecord, error)
	// Export decrypts a managed key as PKCS#8 DER, audited in one
	// transaction with inTx (see keystore.Keystore.Export).
	Export(ctx context.Context, keyID, actor string, detail map[string]string, inTx func(tx store.Tx) error) ([]byte, error)
	// DestroyInBackend destroys a key held in an HSM or KMS there (nothing
	// for a key in the database), returning the detail for its
	// key.destroyed event.
	DestroyInBackend(ctx context.Context, rec store.KeyRecord) (map[string]string, error)
	// GenerateLike creates a key where like lives (the database, an HSM or
	// a KMS); the caller stores its record.
	GenerateLike(ctx context.Context, purpose string, alg keystore.Algorithm, like store.KeyRecord) (crypto.Signer, store.KeyRecord, error)
}

// Config configures an Authority.
type Config struct {
	// Profiles are the issuance profiles by name.
	Profiles map[string]Profile
	// BaseURL is the external base URL of the plain-HTTP listener; AIA and CRL
	// distribution point URLs are built from it.
	BaseURL string
	// Backdate moves NotBefore into the past to absorb clock skew (default 1m).
	Backdate time.Duration
	Clock    clockwork.Clock
	Logger   *slog.Logger
	Metrics  *Metrics // optional
	// FastKDF selects keystore.FastKDFParams for new KEKs (sigil dev only).
	FastKDF bool
	// CRLShards partitions each issuer's CRL: with N > 1 every certificate
	// is assigned one of N shards at issuance (see CRLShard) and its CRL
	// distribution point names that shard's CRL. 0 or 1: one CRL per issuer.
	CRLShards int
	// KEKs opens or creates the KMS KEK a URI names, for RewrapKEKTo; nil
	// when the server cannot reach any KMS.
	KEKs KEKSource
	// Attester attests keys held in an HSM or KMS live (ShowKey); nil: not
	// asked.
	Attester KeyAttester
}

// Channels through which certificates are requested.
const (
	ChannelAPI      = "api"
	ChannelCLI      = "cli"
	ChannelACME     = "acme"
	ChannelManaged  = "managed"
	ChannelRenew    = "renew"
	ChannelInternal = "internal"
	ChannelInit     = "init"
)

// Issuer is a CA certificate and its identifier.
type Issuer struct {
	ID   string
	Cert *x509.Certificate
}

// Authority issues certificates from the active intermediate.
type Authority struct {
	cfg     Config
	st      Store
	keys    KeyManager
	clk     clockwork.Clock
	log     *slog.Logger
	linter  *Linter
	metrics *Metrics

	root Issuer
	// active is the intermediate issuing now; an intermediate rotation
	// swaps it (see RotateIntermediate).
	active atomic.Pointer[signingIssuer]
	// issMu guards signing and known.
	issMu sync.RWMutex
	// signing holds every intermediate whose key this process holds: the
	// active one and those retired by a rotation, which keep signing CRLs
	// and OCSP for what they issued until their key is destroyed.
	signing map[string]*signingIssuer
	// known is every issuer recorded, whatever its state, for chains.
	known map[string]Issuer
	// rotateMu makes intermediate rotations and retirements one at a time.
	rotateMu sync.Mutex

	lastTouch atomic.Int64

	statusMu        sync.Mutex // guards both listener lists
	statusListeners []func(store.CertRecord)
	issuerListeners []func(context.Context)

	// refusals sums unauthenticated refusals between audit summaries.
	refusals *refusalSummaries
	// renewLocks make the check that a certificate has no successor and
	// the issuance of its successor one step per certificate (striped by
	// serial), so that concurrent renewals of it cannot both pass.
	renewLocks [64]sync.Mutex
}

// OnStatusChange registers fn to be called, after commit, with the updated
// record of every certificate revoked or released from hold, so that CRLs
// and OCSP responses can be refreshed at once. fn must not block.
func (a *Authority) OnStatusChange(fn func(store.CertRecord)) {
	a.statusMu.Lock()
	defer a.statusMu.Unlock()
	a.statusListeners = append(a.statusListeners, fn)
}

// OnIssuersChange registers fn to be called after the set of issuers the
// authority serves changed (an intermediate rotated in, a retired one
// destroyed), once the change is committed and before the call that made it
// returns, so that a rotation's caller finds the new issuer's CRLs and OCSP
// responses already published. fn runs synchronously, with a context that
// outlives the caller's cancellation, and handles its own failures.
func (a *Authority) OnIssuersChange(fn func(context.Context)) {
	a.statusMu.Lock()
	defer a.statusMu.Unlock()
	a.issuerListeners = append(a.issuerListeners, fn)
}

func (a *Authority) issuersChanged(ctx context.Context) {
	a.statusMu.Lock()
	listeners := slices.Clone(a.issuerListeners)
	a.statusMu.Unlock()
	ctx = context.WithoutCancel(ctx)
	for _, fn := range listeners {
		fn(ctx)
	}
}

func (a *Authority) statusChanged(rec store.CertRecord) {
	a.statusMu.Lock()
	listeners := slices.Clone(a.statusListeners)
	a.statusMu.Unlock()
	for _, fn := range listeners {
		fn(rec)
	}
}

// New loads the active intermediate, unwraps its key and returns an
// Authority ready to issue. The root key stays wrapped.
func New(ctx context.Context, cfg Config, st Store, keys KeyManager) (*Authority, error) {
	if cfg.Clock == nil {
		return nil, errors.New("ca: config has no clock")
	}
	if cfg.Logger == nil {
		return nil, errors.New("ca: config has no logger")
	}
	if _, err := url.Parse(cfg.BaseURL); err != nil || cfg.BaseURL == "" {
		return nil, fmt.Errorf("ca: bad base URL %q", cfg.BaseURL)
	}
	if cfg.Backdate == 0 {
		cfg.Backdate = time.Minute
	}
	if cfg.CRLShards < 0 || cfg.CRLShards > MaxCRLShards {
		return nil, fmt.Errorf("ca: CRL shards %d: want 0 to %d", cfg.CRLShards, MaxCRLShards)
	}
	for name, p := range cfg.Profiles {
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("ca: profile %s: %w", name, err)
		}
	}
	a := &Authority{cfg: cfg, st: st, keys: keys, clk: cfg.Clock, log: cfg.Logger, metrics: cfg.Metrics,
		refusals: newRefusalSummaries(cfg.Clock)}
	if a.metrics == nil {
		a.metrics = NewMetrics(nil)
	}
	linter, err := NewLinter()
	if err != nil {
		return nil, err
	}
	a.linter = linter
	issuers, err := st.Issuers(ctx)
	if err != nil {
		return nil, fmt.Errorf("ca: load issuers: %w", err)
	}
	if err := a.loadIssuers(ctx, issuers); err != nil {
		return nil, err
	}
	return a, nil
}

func parseIssuer(rec store.IssuerRecord) (Issuer, error) {
	c, err := x509.ParseCertificate(rec.CertDER)
	if err != nil {
		return Issuer{}, fmt.Errorf("ca: parse issuer %s: %w", rec.ID, err)
	}
	return Issuer{ID: rec.ID, Cert: c}, nil
}

// IssuerID derives the short identifier used in URLs and records.
func IssuerID(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return fmt.Sprintf("%x", sum[:8])
}

// Root returns the root certificate.
func (a *Authority) Root() Issuer { return a.root }

// Intermediate returns the certificate currently issuing.
func (a *Authority) Intermediate() Issuer { return a.active.Load().Issuer }

// SignRequest asks for one certificate.
type SignRequest struct {
	CSR       *x509.CertificateRequest
	Profile   string
	Validity  time.Duration // 0: the profile default
	Requester string        // who the certificate is for, e.g. "token:ab12"
	Channel   string        // ChannelAPI, ChannelCLI, ...
	// AllowedProfiles, when non-nil, limits which profiles the requester may use.
	AllowedProfiles []string
	// Replaces is the serial of the certificate this one renews, recorded to
	// link the two (RFC 9773); "" for none. The caller checks it may.
	Replaces string
	// InTx, if set, runs in the transaction that records the certificate,
	// after it, so the caller's own rows (an ACME order turning valid)
	// commit with the certificate or not at all. An error from it undoes
	// the issuance. It may run more than once (a retried group commit).
	InTx func(tx store.Tx, rec store.CertRecord) error
}

// inTxError carries an error of SignRequest.InTx out of the transaction
// untouched, told apart from the store's own.
type inTxError struct{ err error }

func (e *inTxError) Error() string { return e.err.Error() }
func (e *inTxError) Unwrap() error { return e.err }

// Issued is a recorded certificate and the chain to return with it.
type Issued struct {
	Record store.CertRecord
	Chain  [][]byte // DER, leaf first, then the intermediate
	// Repeated says nothing was issued: a renewal asked again, with the
	// same key, for a certificate already renewed gets that successor
	// (its first answer may have been lost on the way).
	Repeated bool
}

// Sign issues a certificate for req or refuses it with an *Error. A refusal
// is audited and writes nothing else.
func (a *Authority) Sign(ctx context.Context, req SignRequest) (*Issued, error) {
	start := a.clk.Now()
	iss, err := a.sign(ctx, req, a.profile(req.Profile))
	if err != nil {
		a.refuse(ctx, req, err)
		return nil, err
	}
	a.metrics.observeIssued(req.Profile, a.clk.Since(start))
	return iss, nil
}

func (a *Authority) profile(name string) *Profile {
	p, ok := a.cfg.Profiles[name]
	if !ok {
		return nil
	}
	return &p
}

func (a *Authority) sign(ctx context.Context, req SignRequest, prof *Profile) (*Issued, error) {
	if prof == nil {
		return nil, errorf(Rejected, "unknown profile %q", req.Profile)
	}
	if req.AllowedProfiles != nil && !contains(req.AllowedProfiles, req.Profile) {
		return nil, errorf(Forbidden, "this token may not issue with profile %q", req.Profile)
	}
	if req.CSR == nil {
		return nil, errorf(BadCSR, "no CSR")
	}
	if err := req.CSR.CheckSignature(); err != nil {
		return nil, errorf(BadCSR, "CSR signature does not verify: %v", err)
	}
	return a.issue(ctx, req, prof)
}

// issue applies the profile and name policy to req.CSR's key and names and
// issues. The caller has checked the profile and the CSR's signature, or
// built the CSR from a certificate whose key the client proved it holds (a
// renewal, see Renew), which is why the signature is not checked here.
func (a *Authority) issue(ctx context.Context, req SignRequest, prof *Profile) (*Issued, error) {
	csr := req.CSR
	alg, err := keystore.AlgorithmOf(csr.PublicKey)
	if err != nil {
		return nil, errorf(BadCSR, "unsupported public key: %v", err)
	}
	if err := prof.checkKey(alg, keystore.RSABits(csr.PublicKey)); err != nil {
		return nil, errorf(BadCSR, "%v", err)
	}
	if err := checkRSAExponent(csr.PublicKey); err != nil {
		return nil, err
	}
	// The hash is recorded with the certificate, so that blocking the key
	// later finds it without parsing anything.
	keyHash, err := KeyHash(csr.PublicKey)
	if err != nil {
		return nil, errorf(BadCSR, "unsupported public key: %v", err)
	}
	if err := a.checkKeyHash(ctx, keyHash); err != nil {
		if e, ok := AsError(err); ok && e.Kind == Forbidden {
			return nil, errorf(BadCSR, "the CSR's %s", e.Detail)
		}
		return nil, err
	}
	names, cn, err := csrNames(csr)
	if err != nil {
		return nil, err
	}
	cur := a.active.Load()
	rec, err := a.buildLeaf(cur, prof, leafRequest{
		pub: csr.PublicKey, alg: alg, keyHash: keyHash, names: names, cn: cn, validity: req.Validity,
		profile: req.Profile, requester: req.Requester, channel: req.Channel, replaces: req.Replaces,
	})
	if err != nil {
		return nil, err
	}
	iss := Issuance{Cert: rec, Actor: req.Requester}
	if req.InTx != nil {
		// Wrapped, so that the caller's errors are told apart from the
		// store's (an ACME refusal is not a serial collision).
		iss.InTx = func(tx store.Tx, rec store.CertRecord) error {
			if err := req.InTx(tx, rec); err != nil {
				return &inTxError{err}
			}
			return nil
		}
	}
	rec, err = a.record(ctx, iss)
	var caller *inTxError
	if errors.As(err, &caller) {
		return nil, caller.err // the caller's refusal, in the caller's words
	}
	if errors.Is(err, store.ErrDuplicate) {
		return nil, internal("serial collision", err)
	}
	if err != nil {
		return nil, internal("record certificate", err)
	}
	return &Issued{Record: rec, Chain: [][]byte{rec.DER, cur.Cert.Raw}}, nil
}

// leafRequest is a subject key and names already checked for syntax,
// with what the record keeps about the request.
type leafRequest struct {
	pub                          crypto.PublicKey
	alg                          keystore.Algorithm
	keyHash                      []byte
	names                        Names
	cn                           string
	validity                     time.Duration // 0: the profile default
	profile                      string
	requester, channel, replaces string
}

// buildLeaf applies prof's name policy and validity to l, then builds,
// lints and signs the certificate with iss, the active intermediate the
// caller loaded once (a rotation meanwhile changes nothing here). It
// returns the record to insert: nothing is stored. Refusals are *Error
// values; the caller audits them.
func (a *Authority) buildLeaf(iss *signingIssuer, prof *Profile, l leafRequest) (store.CertRecord, error) {
	if subs := prof.Names.Check(l.names); len(subs) > 0 {
		e := errorf(Rejected, "%s", subs[0].Detail)
		if len(subs) > 1 {
			e.Detail = fmt.Sprintf("%s (and %d more refused names)", subs[0].Detail, len(subs)-1)
		}
		e.Sub = subs
		return store.CertRecord{}, e
	}
	validity := l.validity
	if validity == 0 {
		validity = time.Duration(prof.DefaultValidity)
		if validity == 0 {
			validity = time.Duration(prof.MaxValidity)
		}
	}
	if validity < 0 {
		return store.CertRecord{}, errorf(Malformed, "negative validity")
	}
	if validity > time.Duration(prof.MaxValidity) {
		return store.CertRecord{}, errorf(Rejected, "requested validity %s exceeds the profile maximum %s", validity, time.Duration(prof.MaxValidity))
	}
	now := a.clk.Now().UTC().Truncate(time.Second)
	notAfter := now.Add(validity)
	if ia := iss.Cert.NotAfter; notAfter.After(ia) {
		notAfter = ia
	}
	serial, err := newSerial()
	if err != nil {
		return store.CertRecord{}, internal("serial", err)
	}
	ski, err := subjectKeyID(l.pub)
	if err != nil {
		return store.CertRecord{}, errorf(BadCSR, "public key: %v", err)
	}
	base := strings.TrimRight(a.cfg.BaseURL, "/")
	shard := CRLShard(serial, a.cfg.CRLShards)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: l.cn},
		NotBefore:             now.Add(-a.cfg.Backdate),
		NotAfter:              notAfter,
		KeyUsage:              prof.keyUsage(l.alg),
		ExtKeyUsage:           prof.extKeyUsage(),
		BasicConstraintsValid: true,
		SubjectKeyId:          ski,
		DNSNames:              l.names.DNS,
		IPAddresses:           l.names.IPs,
		EmailAddresses:        l.names.Email,
		URIs:                  l.names.URIs,
		OCSPServer:            []string{base + "/ocsp"},
		IssuingCertificateURL: []string{base + "/issuer/" + iss.ID + ".crt"},
		CRLDistributionPoints: []string{a.crlURL(iss.ID, shard)},
	}
	// Lint a copy signed by the throwaway key; the real key signs only
	// certificates that pass (RFC 5280 lints, zlint).
	lintDER, err := x509.CreateCertificate(rand.Reader, tmpl, iss.lintParent, l.pub, iss.lintSigner)
	if err != nil {
		return store.CertRecord{}, errorf(BadCSR, "cannot build certificate: %v", err)
	}
	if err := a.linter.Lint(lintDER); err != nil {
		// Lint names are not secret and tell the operator what to fix.
		return store.CertRecord{}, &Error{Kind: Rejected, Detail: "certificate failed pre-issuance lint: " + strings.TrimPrefix(err.Error(), "lint failed: "), Err: err}
	}
	der, err := iss.tbs.sign(lintDER)
	if err != nil {
		return store.CertRecord{}, signError(err)
	}
	return store.CertRecord{
		IssuerID:     iss.ID,
		Serial:       SerialString(serial),
		Subject:      tmpl.Subject.String(),
		SANs:         l.names.Strings(),
		NotBefore:    tmpl.NotBefore,
		NotAfter:     tmpl.NotAfter,
		KeyAlgorithm: string(l.alg),
		Profile:      l.profile,
		Requester:    l.requester,
		Channel:      l.channel,
		DER:          der,
		Created:      now,
		Replaces:     l.replaces,
		CRLShard:     shard,
		SPKIHash:     l.keyHash,
	}, nil
}

// touchDue limits last-used updates of the signing key to one a minute.
func (a *Authority) touchDue(now time.Time) bool {
	last := a.lastTouch.Load()
	if now.UnixNano()-last < int64(time.Minute) {
		return false
	}
	return a.lastTouch.CompareAndSwap(last, now.UnixNano())
}

// RecordRefusal audits a request a surface refused before it reached Sign,
// such as an unparseable CSR.
func (a *Authority) RecordRefusal(ctx context.Context, req SignRequest, err error) {
	a.refuse(ctx, req, err)
}

// refuse audits a refused request. The audit write is best effort: its
// failure is logged, and the caller still gets the refusal.
func (a *Authority) refuse(ctx context.Context, req SignRequest, err error) {
	a.metrics.observeRefused(KindOf(err).String())
	d := map[string]string{"profile": req.Profile, "channel": req.Channel}
	if req.CSR != nil {
		d["names"] = strings.Join(requestedNames(req.CSR), ",")
	}
	a.AuditRefusal(ctx, Refusal{Actor: actorOrSystem(req.Requester), Detail: d, Err: err,
		Op: "issuance", LogAttrs: []any{"profile", req.Profile, "requester", req.Requester}})
}

// requestedNames lists every name a CSR asks for, as sent (for the audit record).
func requestedNames(csr *x509.CertificateRequest) []string {
	var out []string
	if cn := csr.Subject.CommonName; cn != "" {
		out = append(out, "cn:"+cn)
	}
	out = append(out, csr.DNSNames...)
	for _, ip := range csr.IPAddresses {
		out = append(out, ip.String())
	}
	out = append(out, csr.EmailAddresses...)
	for _, u := range csr.URIs {
		out = append(out, u.String())
	}
	return out
}

func actorOrSystem(s string) string {
	if s == "" {
		return "system"
	}
	return s
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// newSerial returns 128 random bits as a positive, non-zero integer.
func newSerial() (*big.Int, error) {
	b := make([]byte, 16)
	for {
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		n := new(big.Int).SetBytes(b)
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// SerialString formats a serial as the store keeps it: lower-case hex.
func SerialString(n *big.Int) string { return fmt.Sprintf("%x", n) }

// subjectKeyID is RFC 7093 §2 method 1: the leftmost 160 bits of the SHA-256
// of the subjectPublicKey BIT STRING.
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(spki.PublicKey.Bytes)
	return sum[:20], nil
}

// backendRetryAfter is what a caller is told to wait when the HSM or KMS
// holding the signing key cannot be reached.
const backendRetryAfter = 5 * time.Second

// signError maps a signing failure: an HSM or KMS that cannot be reached is
// Unavailable (503, retry), anything else Internal.
func signError(err error) error {
	if errors.Is(err, keybackend.ErrUnavailable) {
		return &Error{Kind: Unavailable, Detail: "the signing key's HSM or KMS cannot be reached; retry later", RetryAfter: backendRetryAfter, Err: err}
	}
	return internal("sign", err)
}
