package revocation

import (
	"context"
	"crypto/sha1" // CertID hashes (RFC 5019 §2.1.1), not signatures
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/store"
)

// OCSPAuthority is what the responder needs of ca: signers whose keys stay
// in ca, the end of the responder keys it no longer uses, the issuers it
// answers for, and news of revocations.
type OCSPAuthority interface {
	NewOCSPSigner(ctx context.Context, issuerID string, cfg ca.OCSPSignerConfig) (*ca.OCSPSigner, error)
	TidyOCSPKeys(ctx context.Context, current *ca.OCSPSigner) error
	// ServingIssuers lists the intermediates answered for: the active one
	// first, then those retired by a rotation whose certificates have not
	// all expired.
	ServingIssuers() []ca.Issuer
	OnStatusChange(fn func(store.CertRecord))
	// OnIssuersChange hears of a rotation or a destruction before the call
	// that made it returns.
	OnIssuersChange(fn func(context.Context))
}

// OCSPStore is what the responder reads and writes in the store (its
// transactions see revocation's view, Tx). Reads see only committed data.
type OCSPStore interface {
	WithTx(ctx context.Context, fn func(tx store.Tx) error) error
	// Certificate returns the certificate with serial, archived or not;
	// store.ErrNotFound if none (the responder answers "unknown").
	Certificate(ctx context.Context, serial string) (store.CertRecord, error)
	// OCSPResponses streams the stored responses of issuerID whose
	// nextUpdate is after now, in no particular order; fn's error stops it.
	OCSPResponses(ctx context.Context, issuerID string, now time.Time, fn func(store.OCSPResponse) error) error
	// CertStatuses streams the status of every unexpired certificate of
	// issuerID in insertion order, in bounded pages with no read held
	// across fn calls; fn's error stops it.
	CertStatuses(ctx context.Context, issuerID string, now time.Time, fn func(store.CertStatus) error) error
}

// OCSPConfig configures a Responder.
type OCSPConfig struct {
	// Validity is nextUpdate - thisUpdate of every response (default 24h);
	// responses are re-signed before half of it has passed.
	Validity time.Duration
	// ResponderValidity is the lifetime of delegated responder certificates
	// (default 72h); at least twice Validity, so that a certificate rotated at
	// half-life outlives every response it signed.
	ResponderValidity time.Duration
	// SignWithIssuer signs with the intermediate's key, not a delegated responder.
	SignWithIssuer bool
	// MaxRequestBytes bounds a request, POST body or decoded GET path
	// (default 10 KiB); larger ones are malformedRequest.
	MaxRequestBytes int
	// MissesPerSecond bounds how many requests for serials not in the cache
	// are looked up and signed on the fly (default 50, burst twice that);
	// above it they get tryLater.
	MissesPerSecond float64
	// MaxUnknown bounds the cached "unknown" answers (default 10000).
	MaxUnknown int
	// Nonce echoes the nonce of a POST request (RFC 6960 §4.4.1) in a
	// response signed for that request alone, never cached or stored. Off,
	// nonces are ignored and every answer is pre-signed, as RFC 5019 §2.2.1
	// lets responders do. GETs are answered from the cache either way.
	Nonce bool
	// NoncesPerSecond bounds the nonce responses signed on demand (default
	// 200, burst twice that); above it a POST gets the pre-signed response,
	// without its nonce, and the client decides whether that will do.
	NoncesPerSecond float64
	// NoncesPerSourcePerSecond bounds them per client (IPv4 address or
	// IPv6 /64; default 5, burst twice that), so that one client cannot
	// spend the budget of all.
	NoncesPerSourcePerSecond float64
	// NonceCPUShare bounds the signing time spent on them, as a share of
	// one core (default 0.1): the count alone would let an RSA responder's
	// nonces cost a hundred times a P-256 one's.
	NonceCPUShare float64
	// MaxNonceSources bounds the clients tracked at once (default 10000);
	// beyond it new clients get the pre-signed response until some idle.
	MaxNonceSources int
	Clock           clockwork.Clock
	Logger          *slog.Logger
	// Registerer receives the metrics (nil: unregistered).
	Registerer prometheus.Registerer
}

// WithDefaults returns c with every unset field at its default, as
// NewResponder uses it: the defaults live here, and a caller that shows
// them (sigil init's sigil.yaml) reads them from here. A zero duration is
// unset; so is a count or rate of zero or less.
func (c OCSPConfig) WithDefaults() OCSPConfig {
	if c.Validity == 0 {
		c.Validity = 24 * time.Hour
	}
	if c.ResponderValidity == 0 {
		c.ResponderValidity = 72 * time.Hour
	}
	if c.MaxRequestBytes <= 0 {
		c.MaxRequestBytes = 10 << 10
	}
	if c.MissesPerSecond <= 0 {
		c.MissesPerSecond = 50
	}
	if c.MaxUnknown <= 0 {
		c.MaxUnknown = 10000
	}
	if c.NoncesPerSecond <= 0 {
		c.NoncesPerSecond = 200
	}
	if c.NoncesPerSourcePerSecond <= 0 {
		c.NoncesPerSourcePerSecond = 5
	}
	if c.NonceCPUShare <= 0 {
		c.NonceCPUShare = 0.1
	}
	if c.MaxNonceSources <= 0 {
		c.MaxNonceSources = 10000
	}
	return c
}

// unknownValidity is the nextUpdate of "unknown" answers: short, since they
// are signed on the fly and never stored.
const unknownValidity = time.Hour

// persistBatch bounds the responses one store transaction upserts so that
// the single writer is never held long away from issuance.
const persistBatch = 500

// entry is one certificate's pre-signed responses, immutable once built:
// a refresh replaces the pointer.
type entry struct {
	status     int // ocsp.Good, ocsp.Revoked or ocsp.Unknown
	revokedAt  time.Time
	reason     int
	thisUpdate time.Time
	nextUpdate time.Time
	der        [numHashes][]byte
	etag       [numHashes]string
	// RFC 5019 §6.2 header values, formatted once.
	lastModified string
	expires      string
	bad          bool // while loading: rows that disagree, served neither
}

// issuerState is one served issuer: its CertID hashes, its signer and its
// cache, keyed by serial magnitude bytes.
type issuerState struct {
	id       string
	cert     *x509.Certificate
	nameHash [numHashes][]byte
	keyHash  [numHashes][]byte

	signerMu sync.RWMutex
	signer   *ca.OCSPSigner

	mu      sync.RWMutex
	entries map[string]*entry
	unknown map[string]*entry // bounded; never persisted
}

// issuerIndex is the served issuers, immutable: a change of the set (an
// intermediate rotation, or a retired one's key destroyed) replaces it, so
// that requests find their issuer without a lock.
type issuerIndex struct {
	byKeyHash map[string]*issuerState // by issuerKeyHash, SHA-1 or SHA-256
	byID      map[string]*issuerState
	order     []*issuerState // as ServingIssuers lists them
}

// Responder answers OCSP requests (RFC 6960, RFC 5019 profile) for every
// intermediate the CA serves (the active one, and those retired by a
// rotation until their last certificate expires) from pre-signed responses
// held in memory and copied to the store. A GET or POST for a cached serial
// is a map lookup: no signing, no database query.
type Responder struct {
	cfg     OCSPConfig
	auth    OCSPAuthority
	st      OCSPStore
	clk     clockwork.Clock
	log     *slog.Logger
	metrics *ocspMetrics
	misses  *rate.Limiter
	nonces  *nonceBudget

	idx    atomic.Pointer[issuerIndex]
	syncMu sync.Mutex // one change of the issuer set at a time

	refreshMu sync.Mutex // one Refresh at a time: the jobs', an issuer change's

	persistCh chan []store.OCSPResponse
	stop      chan struct{}
	done      sync.WaitGroup
	closeOnce sync.Once
}

// NewResponder checks cfg and returns a Responder for auth's
// intermediates. It serves nothing until Start.
func NewResponder(cfg OCSPConfig, auth OCSPAuthority, st OCSPStore) (*Responder, error) {
	if cfg.Clock == nil {
		return nil, errors.New("ocsp: config has no clock")
	}
	if cfg.Logger == nil {
		return nil, errors.New("ocsp: config has no logger")
	}
	cfg = cfg.WithDefaults()
	if cfg.Validity < time.Minute {
		return nil, fmt.Errorf("ocsp: validity %s is under a minute", cfg.Validity)
	}
	if !cfg.SignWithIssuer && cfg.ResponderValidity < 2*cfg.Validity {
		return nil, fmt.Errorf("ocsp: responder validity %s is under twice the response validity %s", cfg.ResponderValidity, cfg.Validity)
	}
	r := &Responder{
		cfg: cfg, auth: auth, st: st, clk: cfg.Clock, log: cfg.Logger,
		metrics:   newOCSPMetrics(cfg.Registerer),
		misses:    rate.NewLimiter(rate.Limit(cfg.MissesPerSecond), int(2*cfg.MissesPerSecond)+1),
		nonces:    newNonceBudget(cfg.NoncesPerSecond, cfg.NoncesPerSourcePerSecond, cfg.NonceCPUShare, cfg.MaxNonceSources),
		persistCh: make(chan []store.OCSPResponse, 64),
		stop:      make(chan struct{}),
	}
	r.idx.Store(&issuerIndex{byKeyHash: map[string]*issuerState{}, byID: map[string]*issuerState{}})
	return r, nil
}

func newIssuerState(is ca.Issuer) (*issuerState, error) {
	var spki struct {
		Algorithm asn1.RawValue
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(is.Cert.RawSubjectPublicKeyInfo, &spki); err != nil {
		return nil, fmt.Errorf("ocsp: issuer %s public key: %w", is.ID, err)
	}
	s := &issuerState{id: is.ID, cert: is.Cert, entries: map[string]*entry{}, unknown: map[string]*entry{}}
	n1, k1 := sha1.Sum(is.Cert.RawSubject), sha1.Sum(spki.PublicKey.RightAlign())
	n2, k2 := sha256.Sum256(is.Cert.RawSubject), sha256.Sum256(spki.PublicKey.RightAlign())
	s.nameHash[hashSHA1], s.keyHash[hashSHA1] = n1[:], k1[:]
	s.nameHash[hashSHA256], s.keyHash[hashSHA256] = n2[:], k2[:]
	return s, nil
}

// Start gets a signer for every served issuer (the recorded responder
// certificate if it is not due for renewal, so restarts do not pile up
// responder keys), loads the stored responses, signs those missing or due
// for every unexpired certificate, and subscribes to revocations and issuer
// changes. It returns once every unexpired certificate has a response in
// memory. The periodic work is the caller's: the lifecycle jobs ocsp-refresh
// and ocsp-responder-rotate call Refresh and RotateIfDue at least every
// RefreshInterval; the responder runs no schedule of its own.
func (r *Responder) Start(ctx context.Context) error {
	if err := r.sync(ctx); err != nil {
		return err
	}
	r.auth.OnStatusChange(r.statusChanged)
	r.auth.OnIssuersChange(r.issuersChanged)
	r.done.Add(1)
	go r.persistLoop()
	if _, err := r.Refresh(ctx); err != nil {
		return err
	}
	return nil
}

// RefreshInterval is how often Refresh must run to keep every response
// under half its validity: an eighth of the validity, at least a minute.
func (r *Responder) RefreshInterval() time.Duration { return r.refreshInterval() }

// RotateIfDue rotates the responder certificate if the next refresh would
// come at or after its half-life, re-signing every response with the new
// one, and retires or destroys responder keys no longer needed. It reports
// whether it rotated. Refresh does the same when it runs; this is the
// rotation on its own schedule (the ocsp-responder-rotate job).
func (r *Responder) RotateIfDue(ctx context.Context) (bool, error) {
	now := r.clk.Now()
	due := false
	for _, iss := range r.idx.Load().order {
		due = due || r.rotationDue(iss.Signer(), now)
	}
	if !due {
		for _, iss := range r.idx.Load().order {
			if err := r.auth.TidyOCSPKeys(ctx, iss.Signer()); err != nil {
				return false, fmt.Errorf("ocsp: tidy responder keys of %s: %w", iss.id, err)
			}
		}
		return false, nil
	}
	// Due now, so refresh rotates (unless a refresh running meanwhile did).
	if _, err := r.Refresh(ctx); err != nil {
		return false, err
	}
	return true, nil
}

// Close stops the store writer and waits for pending store writes.
func (r *Responder) Close() {
	r.closeOnce.Do(func() {
		close(r.stop)
		r.done.Wait()
	})
}

func (r *Responder) signerConfig() ca.OCSPSignerConfig {
	return ca.OCSPSignerConfig{Validity: r.cfg.ResponderValidity, SignWithIssuer: r.cfg.SignWithIssuer,
		RenewMargin: r.refreshInterval()}
}

// rotationDue reports whether s must be replaced at this refresh: the next
// one would come at or after its half-life, which is thus never passed.
func (r *Responder) rotationDue(s *ca.OCSPSigner, now time.Time) bool {
	return !s.RenewAt().IsZero() && !now.Add(r.refreshInterval()).Before(s.RenewAt())
}

func (s *issuerState) setSigner(signer *ca.OCSPSigner) {
	s.signerMu.Lock()
	s.signer = signer
	s.signerMu.Unlock()
}

// Signer returns the issuer's current signer.
func (s *issuerState) Signer() *ca.OCSPSigner {
	s.signerMu.RLock()
	defer s.signerMu.RUnlock()
	return s.signer
}

// Signer returns the current signer of the first served issuer, the
// active intermediate (for tests and the CLI: the responder certificate to
// trust with openssl -VAfile); nil before Start.
func (r *Responder) Signer() *ca.OCSPSigner {
	if order := r.idx.Load().order; len(order) > 0 {
		return order[0].Signer()
	}
	return nil
}

// SignerFor returns the current signer of issuerID; nil if it is not served.
func (r *Responder) SignerFor(issuerID string) *ca.OCSPSigner {
	if iss := r.idx.Load().byID[issuerID]; iss != nil {
		return iss.Signer()
	}
	return nil
}

// sync makes the served issuers those auth serves: a new one (after an
// intermediate rotation) gets a signer and its stored responses loaded
// (Refresh signs the rest), one no longer served (its key destroyed after
// its last certificate expired) is dropped with its cache.
func (r *Responder) sync(ctx context.Context) error {
	r.syncMu.Lock()
	defer r.syncMu.Unlock()
	old := r.idx.Load()
	serving := r.auth.ServingIssuers()
	next := &issuerIndex{byKeyHash: map[string]*issuerState{}, byID: map[string]*issuerState{}}
	changed := len(serving) != len(old.order)
	for _, is := range serving {
		st := old.byID[is.ID]
		if st == nil {
			changed = true
			var err error
			if st, err = r.addIssuer(ctx, is); err != nil {
				return err
			}
		}
		next.order = append(next.order, st)
		next.byID[st.id] = st
		for h := range numHashes {
			next.byKeyHash[string(st.keyHash[h])] = st
		}
	}
	for id := range old.byID {
		if next.byID[id] == nil {
			r.log.InfoContext(ctx, "ocsp: issuer no longer served: its key was destroyed", "issuer", id)
		}
	}
	if changed {
		r.idx.Store(next)
		r.updateCached()
	}
	return nil
}

// addIssuer prepares is to be served: its signer and its stored responses.
func (r *Responder) addIssuer(ctx context.Context, is ca.Issuer) (*issuerState, error) {
	st, err := newIssuerState(is)
	if err != nil {
		return nil, err
	}
	signer, err := r.auth.NewOCSPSigner(ctx, is.ID, r.signerConfig())
	if err != nil {
		return nil, fmt.Errorf("ocsp signer of %s: %w", is.ID, err)
	}
	st.setSigner(signer)
	loaded, err := r.load(ctx, st)
	if err != nil {
		return nil, err
	}
	r.log.InfoContext(ctx, "ocsp responses loaded from the store", "issuer", is.ID, "count", loaded)
	return st, nil
}

// updateCached sets the cached-responses gauge to the total over issuers.
func (r *Responder) updateCached() {
	n := 0
	for _, iss := range r.idx.Load().order {
		iss.mu.RLock()
		n += len(iss.entries)
		iss.mu.RUnlock()
	}
	r.metrics.cached.Set(float64(n))
}

// serialKey turns a record's hex serial into the cache key: its big-endian
// magnitude bytes without leading zeros, as requests carry it.
func serialKey(serial string) (string, error) {
	if len(serial)%2 == 1 {
		serial = "0" + serial
	}
	b, err := hex.DecodeString(serial)
	if err != nil {
		return "", err
	}
	for len(b) > 0 && b[0] == 0 {
		b = b[1:]
	}
	if len(b) == 0 {
		return "", errors.New("zero serial")
	}
	return string(b), nil
}

func etag(der []byte) string {
	sum := sha256.Sum256(der)
	return `"` + hex.EncodeToString(sum[:16]) + `"`
}
