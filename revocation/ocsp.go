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
	"maps"
	"math/big"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/ocsp"
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
	if cfg.Validity == 0 {
		cfg.Validity = 24 * time.Hour
	}
	if cfg.ResponderValidity == 0 {
		cfg.ResponderValidity = 72 * time.Hour
	}
	if cfg.Validity < time.Minute {
		return nil, fmt.Errorf("ocsp: validity %s is under a minute", cfg.Validity)
	}
	if !cfg.SignWithIssuer && cfg.ResponderValidity < 2*cfg.Validity {
		return nil, fmt.Errorf("ocsp: responder validity %s is under twice the response validity %s", cfg.ResponderValidity, cfg.Validity)
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = 10 << 10
	}
	if cfg.MissesPerSecond <= 0 {
		cfg.MissesPerSecond = 50
	}
	if cfg.MaxUnknown <= 0 {
		cfg.MaxUnknown = 10000
	}
	if cfg.NoncesPerSecond <= 0 {
		cfg.NoncesPerSecond = 200
	}
	if cfg.NoncesPerSourcePerSecond <= 0 {
		cfg.NoncesPerSourcePerSecond = 5
	}
	if cfg.NonceCPUShare <= 0 {
		cfg.NonceCPUShare = 0.1
	}
	if cfg.MaxNonceSources <= 0 {
		cfg.MaxNonceSources = 10000
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

// load fills iss's cache from the store copy, keeping only responses that
// are still valid, verify under the issuer (signed by it, or by a responder
// certificate it issued for OCSP signing), answer for the serial and CertID
// hash their row names, agree with their sibling row, and say what the
// certificate's record says. Anything else (a corrupted, forged, swapped or
// stale row) is dropped with a warning and re-signed by the next refresh:
// the store is a copy, never an authority.
func (r *Responder) load(ctx context.Context, iss *issuerState) (int, error) {
	now := r.clk.Now()
	byserial := map[string]*entry{}
	var rejected int
	reject := func(serial, why string, err error) {
		rejected++
		r.log.WarnContext(ctx, "stored ocsp response rejected; it will be re-signed", "issuer", iss.id, "serial", serial,
			"reason", why, "error", err)
	}
	responders := verifiedResponders{issuer: iss.cert, ok: map[string]bool{}}
	err := r.st.OCSPResponses(ctx, iss.id, now, func(o store.OCSPResponse) error {
		h, ok := hashByName(o.Hash)
		if !ok {
			return nil
		}
		key, err := serialKey(o.Serial)
		if err != nil {
			return nil // a row we cannot use is re-signed by the sweep
		}
		resp, err := responders.parse(o.DER)
		if err != nil {
			reject(o.Serial, "signature or encoding", err)
			return nil
		}
		if why := checkStored(resp, o, h, now); why != "" {
			reject(o.Serial, why, nil)
			return nil
		}
		e := byserial[key]
		switch {
		case e == nil:
		case e.bad:
			return nil
		case e.thisUpdate.After(resp.ThisUpdate):
			return nil
		case e.thisUpdate.Before(resp.ThisUpdate):
			e = nil // a newer pair replaces an older one
		case e.status != resp.Status || !e.revokedAt.Equal(resp.RevokedAt) || e.reason != resp.RevocationReason:
			reject(o.Serial, "its sibling response says another status", nil)
			e.bad = true
			return nil
		}
		if e == nil {
			e = &entry{status: resp.Status, revokedAt: resp.RevokedAt, reason: resp.RevocationReason,
				thisUpdate: resp.ThisUpdate, nextUpdate: resp.NextUpdate}
			e.lastModified = e.thisUpdate.UTC().Format(http.TimeFormat)
			e.expires = e.nextUpdate.UTC().Format(http.TimeFormat)
			byserial[key] = e
		}
		e.der[h] = o.DER
		e.etag[h] = etag(o.DER)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("ocsp: load stored responses: %w", err)
	}
	// Served only what the certificate's record says now: a response for a
	// serial with no unexpired certificate, or for another status, is not.
	keep := map[string]*entry{}
	err = r.st.CertStatuses(ctx, iss.id, now, func(c store.CertStatus) error {
		key, err := serialKey(c.Serial)
		if err != nil {
			return nil
		}
		e := byserial[key]
		if e == nil || e.bad || e.der[hashSHA1] == nil || e.der[hashSHA256] == nil {
			return nil
		}
		if !sameStatus(e, c.RevokedAt, c.RevokeReason) {
			reject(c.Serial, "says another status than the certificate's record", nil)
			return nil
		}
		keep[key] = e
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("ocsp: load stored responses: %w", err)
	}
	iss.mu.Lock()
	maps.Copy(iss.entries, keep)
	iss.mu.Unlock()
	if rejected > 0 {
		r.metrics.storedRejected.Add(float64(rejected))
	}
	return len(keep), nil
}

// checkStored says why a parsed stored response cannot be served for the
// row o (CertID hash h), or "" if it can.
// verifiedResponders parses stored responses and checks each under its
// issuer. ParseResponse already checks a response against the responder
// certificate it embeds; that certificate is checked against the issuer
// once per load, not once per row (every row of a load shares one or two).
type verifiedResponders struct {
	issuer *x509.Certificate
	ok     map[string]bool // raw responder certificates issued by issuer
}

func (v verifiedResponders) parse(der []byte) (*ocsp.Response, error) {
	resp, err := ocsp.ParseResponse(der, nil)
	if err != nil {
		return nil, err
	}
	if resp.Certificate == nil {
		// Signed by the issuer itself: nothing embedded vouched for it.
		if err := resp.CheckSignatureFrom(v.issuer); err != nil {
			return nil, fmt.Errorf("bad OCSP signature: %w", err)
		}
		return resp, nil
	}
	raw := string(resp.Certificate.Raw)
	if !v.ok[raw] {
		if err := resp.Certificate.CheckSignatureFrom(v.issuer); err != nil {
			return nil, fmt.Errorf("responder certificate not issued by the issuer: %w", err)
		}
		v.ok[raw] = true
	}
	return resp, nil
}

func checkStored(resp *ocsp.Response, o store.OCSPResponse, h hashIndex, now time.Time) string {
	n, ok := new(big.Int).SetString(o.Serial, 16)
	switch {
	case !ok || resp.SerialNumber == nil || resp.SerialNumber.Cmp(n) != 0:
		return "answers for another serial"
	case resp.IssuerHash != h.crypto():
		return "uses another CertID hash than its row"
	case resp.Certificate != nil && !slices.Contains(resp.Certificate.ExtKeyUsage, x509.ExtKeyUsageOCSPSigning):
		return "signed by a certificate not issued for OCSP signing"
	case !now.Before(resp.NextUpdate) || resp.ThisUpdate.After(now):
		return "outside its validity"
	case resp.Status != ocsp.Good && resp.Status != ocsp.Revoked:
		return "status neither good nor revoked"
	}
	return ""
}

// refreshInterval is how often the jobs must check for responses and responder
// certificates due for renewal.
func (r *Responder) refreshInterval() time.Duration {
	return max(r.cfg.Validity/8, time.Minute)
}

// Refresh first takes up the issuers an intermediate rotation added and
// drops those whose key was destroyed; then, for each served issuer, it
// rotates the responder certificate at the last refresh before half its
// life has passed (ca retires the old key) and re-signs every response with
// the new one; otherwise it signs a response for every unexpired
// certificate whose cached one is missing, says another status, or would
// pass half its validity before the next refresh. Expired entries are
// dropped. New responses are served at once and copied to the store in
// batches. Last, responder keys no longer needed are retired or destroyed
// (ca.TidyOCSPKeys); a failure there is logged, not returned. It returns
// how many responses it signed.
func (r *Responder) Refresh(ctx context.Context) (int, error) {
	r.refreshMu.Lock()
	defer r.refreshMu.Unlock()
	if err := r.sync(ctx); err != nil {
		return 0, err
	}
	signed := 0
	for _, iss := range r.idx.Load().order {
		n, err := r.refreshIssuer(ctx, iss)
		signed += n
		if err != nil {
			return signed, err
		}
	}
	r.updateCached()
	return signed, nil
}

func (r *Responder) refreshIssuer(ctx context.Context, iss *issuerState) (int, error) {
	now := r.clk.Now()
	rotated := false
	if s := iss.Signer(); r.rotationDue(s, now) {
		next, err := r.auth.NewOCSPSigner(ctx, iss.id, r.signerConfig())
		if err != nil {
			return 0, fmt.Errorf("ocsp: rotate responder certificate of %s: %w", iss.id, err)
		}
		iss.setSigner(next)
		rotated = true
		r.log.InfoContext(ctx, "ocsp responder certificate rotated", "issuer", iss.id,
			"serial", ca.SerialString(next.Certificate().SerialNumber), "previous", ca.SerialString(s.Certificate().SerialNumber))
	}
	dueBy := now.Add(r.refreshInterval())
	var batch []store.OCSPResponse
	signed := 0
	// A full disk stops the store copy, not the refresh: what is signed is
	// served from memory, and the copy is retried at the next refresh, one
	// bounded batch at a time, so a restart needs no more room than the
	// running server did.
	full := false
	persist := func(rows []store.OCSPResponse) error {
		if full {
			r.metrics.persistFull.Add(float64(len(rows)))
			return nil
		}
		err := r.persist(ctx, rows)
		if errors.Is(err, store.ErrFull) {
			full = true
			r.metrics.persistFull.Add(float64(len(rows)))
			r.log.WarnContext(ctx, "ocsp: database or disk full; responses are served from memory and stored at a later refresh",
				"issuer", iss.id, "error", err)
			return nil
		}
		return err
	}
	err := r.st.CertStatuses(ctx, iss.id, now, func(c store.CertStatus) error {
		key, err := serialKey(c.Serial)
		if err != nil {
			return nil // not a serial we could be asked about
		}
		iss.mu.RLock()
		cur := iss.entries[key]
		iss.mu.RUnlock()
		// After a rotation every response is re-signed: relying parties see
		// the new responder certificate from now on, not the retired one.
		if !rotated && cur != nil && sameStatus(cur, c.RevokedAt, c.RevokeReason) &&
			dueBy.Before(cur.thisUpdate.Add(r.cfg.Validity/2)) {
			return nil
		}
		e, rows, err := r.sign(iss, c.Serial, c.RevokedAt, c.RevokeReason, now, r.cfg.Validity)
		if err != nil {
			return err
		}
		r.put(iss, key, e)
		signed++
		batch = append(batch, rows...)
		if len(batch) >= persistBatch {
			if err := persist(batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
		return nil
	})
	if err != nil {
		return signed, fmt.Errorf("ocsp: refresh %s: %w", iss.id, err)
	}
	if err := persist(batch); err != nil {
		return signed, fmt.Errorf("ocsp: refresh %s: %w", iss.id, err)
	}
	iss.dropExpired(now)
	if signed > 0 {
		r.log.InfoContext(ctx, "ocsp responses signed", "issuer", iss.id, "count", signed)
	}
	if err := r.auth.TidyOCSPKeys(ctx, iss.Signer()); err != nil {
		r.log.ErrorContext(ctx, "ocsp responder keys not tidied", "issuer", iss.id, "error", err)
	}
	return signed, nil
}

func sameStatus(e *entry, revokedAt time.Time, reason int) bool {
	if revokedAt.IsZero() {
		return e.status == ocsp.Good
	}
	return e.status == ocsp.Revoked && e.revokedAt.Equal(revokedAt.UTC().Truncate(time.Second)) && e.reason == reason
}

// dropExpired forgets responses past their nextUpdate: their certificates
// expired (unexpired ones were just refreshed), or they answered "unknown".
func (s *issuerState) dropExpired(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, e := range s.entries {
		if !now.Before(e.nextUpdate) {
			delete(s.entries, k)
		}
	}
	for k, e := range s.unknown {
		if !now.Before(e.nextUpdate) {
			delete(s.unknown, k)
		}
	}
}

func (r *Responder) put(iss *issuerState, key string, e *entry) {
	iss.mu.Lock()
	iss.entries[key] = e
	delete(iss.unknown, key)
	iss.mu.Unlock()
	r.updateCached()
}

// sign signs the responses (one per CertID hash) saying status for serial.
// status is good if revokedAt is zero, revoked otherwise, unknown if
// unknown is set by the caller through signUnknown.
func (r *Responder) sign(iss *issuerState, serial string, revokedAt time.Time, reason int, now time.Time, validity time.Duration) (*entry, []store.OCSPResponse, error) {
	status := ocsp.Good
	if !revokedAt.IsZero() {
		status = ocsp.Revoked
	}
	return r.signStatus(iss, serial, status, revokedAt, reason, now, validity)
}

func (r *Responder) signStatus(iss *issuerState, serial string, status int, revokedAt time.Time, reason int, now time.Time, validity time.Duration) (*entry, []store.OCSPResponse, error) {
	n, ok := new(big.Int).SetString(serial, 16)
	if !ok {
		return nil, nil, fmt.Errorf("ocsp: bad serial %q", serial)
	}
	signer := iss.Signer()
	// RFC 5019 §4: thisUpdate is when the status was known correct; whole
	// seconds as in the record. A response never outlives its signer.
	this := now.UTC().Truncate(time.Second)
	next := this.Add(validity)
	if na := signer.NotAfter(); next.After(na) {
		next = na
	}
	e := &entry{status: status, thisUpdate: this, nextUpdate: next,
		lastModified: this.Format(http.TimeFormat), expires: next.Format(http.TimeFormat)}
	tmpl := ocsp.Response{Status: status, SerialNumber: n, ThisUpdate: this, NextUpdate: next}
	if status == ocsp.Revoked {
		e.revokedAt, e.reason = revokedAt.UTC().Truncate(time.Second), reason
		tmpl.RevokedAt, tmpl.RevocationReason = e.revokedAt, reason
	}
	rows := make([]store.OCSPResponse, 0, numHashes)
	for h := range numHashes {
		tmpl.IssuerHash = h.crypto()
		der, err := signer.Sign(tmpl)
		if err != nil {
			return nil, nil, fmt.Errorf("ocsp: serial %s: %w", serial, err)
		}
		r.metrics.signed.Inc()
		e.der[h], e.etag[h] = der, etag(der)
		rows = append(rows, store.OCSPResponse{IssuerID: iss.id, Serial: serial, Hash: h.String(), DER: der, ThisUpdate: this, NextUpdate: next})
	}
	return e, rows, nil
}

func (r *Responder) persist(ctx context.Context, rows []store.OCSPResponse) error {
	if len(rows) == 0 {
		return nil
	}
	if err := update(ctx, r.st, func(tx Tx) error { return tx.PutOCSPResponses(rows) }); err != nil {
		return fmt.Errorf("store ocsp responses: %w", err)
	}
	return nil
}

// persistLoop writes responses signed outside Refresh (after a revocation,
// or on a cache miss) without holding up the caller.
func (r *Responder) persistLoop() {
	defer r.done.Done()
	for {
		select {
		case rows := <-r.persistCh:
			if err := r.persist(context.Background(), rows); err != nil {
				r.log.Error("ocsp persist", "error", err)
			}
		case <-r.stop:
			for {
				select {
				case rows := <-r.persistCh:
					if err := r.persist(context.Background(), rows); err != nil {
						r.log.Error("ocsp persist", "error", err)
					}
				default:
					return
				}
			}
		}
	}
}

// persistLater queues rows for the store; if the queue is full they are
// dropped: the store copy is then stale until the next refresh, which
// compares it with the certificate's status after a restart.
func (r *Responder) persistLater(rows []store.OCSPResponse) {
	select {
	case r.persistCh <- rows:
	default:
		r.log.Warn("ocsp persist queue full; store copy refreshed later")
	}
}

// issuersChanged refreshes at once for the issuers auth serves now: a new
// intermediate's responses are signed before its first certificate is asked
// about, a destroyed one's are dropped. A failure is logged: the next
// Refresh tries again.
func (r *Responder) issuersChanged(ctx context.Context) {
	if _, err := r.Refresh(ctx); err != nil {
		r.log.ErrorContext(ctx, "OCSP responses after an issuer change", "error", err)
	}
}

// statusChanged re-signs a certificate's responses as soon as its
// revocation (or release from hold) is committed, so that the next request
// sees it: two signatures, in memory; the store copy follows asynchronously.
func (r *Responder) statusChanged(rec store.CertRecord) {
	iss := r.idx.Load().byID[rec.IssuerID]
	if iss == nil {
		return
	}
	key, err := serialKey(rec.Serial)
	if err != nil {
		return
	}
	now := r.clk.Now()
	if !now.Before(rec.NotAfter) {
		return
	}
	e, rows, err := r.sign(iss, rec.Serial, rec.RevokedAt, rec.RevokeReason, now, r.cfg.Validity)
	if err != nil {
		r.log.Error("ocsp re-sign after status change", "serial", rec.Serial, "error", err)
		// Serve nothing stale: a miss looks the certificate up again.
		iss.mu.Lock()
		delete(iss.entries, key)
		iss.mu.Unlock()
		return
	}
	r.put(iss, key, e)
	r.persistLater(rows)
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
