package revocation

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

// CRLAuthority is what the publisher needs from the CA: which issuers and
// shards to publish for, and a signature. ca.CRLSigner (ca.Authority.CRL)
// implements it.
type CRLAuthority interface {
	// ServingIssuers lists the intermediates whose CRLs are published: the
	// active one and those retired by a rotation whose certificates have
	// not all expired.
	ServingIssuers() []ca.Issuer
	CRLShards() int
	CRLURL(issuerID string, shard int) string
	CRLSignatureAlgorithm(issuerID string) ([]byte, error)
	CRLSignature(ctx context.Context, issuerID string, tbs []byte) ([]byte, error)
	OnStatusChange(fn func(store.CertRecord))
	// OnIssuersChange hears of a rotation or a destruction before the call
	// that made it returns.
	OnIssuersChange(fn func(context.Context))
}

// CRLStore is what the publisher reads and writes (its transactions see
// revocation's view, Tx). store.SQLite implements it.
type CRLStore interface {
	WithTx(ctx context.Context, fn func(tx store.Tx) error) error
	// RevokedCertificates streams, never holding every row in memory, the
	// revoked certificates of issuerID in CRL shard that expire at or
	// after notAfterSince or were revoked at or after it, in no particular
	// order; fn's error stops it.
	RevokedCertificates(ctx context.Context, issuerID string, shard int, notAfterSince time.Time, fn func(store.RevokedEntry) error) error
	// CRLHead returns the latest stored CRL of issuerID and shard without
	// its DER; store.ErrNotFound if none.
	CRLHead(ctx context.Context, issuerID string, shard int) (store.CRLHead, error)
	// CRLs returns the latest CRL of every shard of issuerID, by shard.
	CRLs(ctx context.Context, issuerID string) ([]store.CRLRecord, error)
}

// CRLConfig configures a Publisher.
type CRLConfig struct {
	// Validity is nextUpdate - thisUpdate (default 24h).
	Validity time.Duration
	// Refresh is how often the caller regenerates every CRL (default 1h):
	// the lifecycle job crl-publish calls Publish, the publisher itself
	// only regenerates after revocations. It must be shorter than Validity
	// so that a CRL is replaced before it goes stale.
	Refresh time.Duration
	// Debounce is how long after a revocation the affected CRL is
	// regenerated, gathering the revocations that follow (default 2s).
	Debounce time.Duration
	Clock    clockwork.Clock
	Logger   *slog.Logger
	Metrics  *CRLMetrics // optional
}

// WithDefaults returns c with every unset (zero) field at its default, as
// NewPublisher uses it; callers that show the defaults read them here.
func (c CRLConfig) WithDefaults() CRLConfig {
	if c.Validity == 0 {
		c.Validity = 24 * time.Hour
	}
	if c.Refresh == 0 {
		c.Refresh = time.Hour
	}
	if c.Debounce == 0 {
		c.Debounce = 2 * time.Second
	}
	return c
}

// Publisher generates, stores and serves the CRLs of every intermediate the
// CA serves (the active one, and those retired by a rotation until their
// last certificate expires): one whole CRL (shard 0) per issuer and, when
// the CA partitions CRLs, one per shard. It is safe for concurrent use.
type Publisher struct {
	cfg     CRLConfig
	auth    CRLAuthority
	st      CRLStore
	clk     clockwork.Clock
	log     *slog.Logger
	metrics *CRLMetrics

	genMu sync.Mutex // one generation at a time

	mu      sync.RWMutex
	issuers map[string]*issuerCRLs // served issuers by id

	changed chan struct{}
	bg      background

	// afterPublish, if set (by tests), hears of every stored CRL.
	afterPublish func(store.CRLRecord)
}

// issuerCRLs is one served issuer's CRLs.
type issuerCRLs struct {
	issuer ca.Issuer
	sigAlg []byte
	crls   map[int]published // by shard
	dirty  map[int]bool      // shards with a revocation since their CRL
}

// published is a CRL as served.
type published struct {
	rec  store.CRLRecord
	etag string
}

// NewPublisher checks cfg and returns a publisher for auth's intermediates.
// It listens for revocations at once; Start loads the stored CRLs and
// begins regenerating after revocations.
func NewPublisher(cfg CRLConfig, auth CRLAuthority, st CRLStore) (*Publisher, error) {
	if cfg.Clock == nil {
		return nil, errors.New("crl publisher: config has no clock")
	}
	if cfg.Logger == nil {
		return nil, errors.New("crl publisher: config has no logger")
	}
	cfg = cfg.WithDefaults()
	if cfg.Validity < time.Minute || cfg.Refresh < time.Second || cfg.Debounce < 0 {
		return nil, fmt.Errorf("crl publisher: validity %s (at least 1m), refresh %s (at least 1s) or debounce %s out of range",
			cfg.Validity, cfg.Refresh, cfg.Debounce)
	}
	if cfg.Refresh >= cfg.Validity {
		return nil, fmt.Errorf("crl publisher: refresh %s must be shorter than validity %s", cfg.Refresh, cfg.Validity)
	}
	p := &Publisher{cfg: cfg, auth: auth, st: st, clk: cfg.Clock, log: cfg.Logger, metrics: cfg.Metrics,
		issuers: map[string]*issuerCRLs{}, changed: make(chan struct{}, 1)}
	if p.metrics == nil {
		p.metrics = NewCRLMetrics(nil)
	}
	for _, iss := range auth.ServingIssuers() {
		if _, err := auth.CRLSignatureAlgorithm(iss.ID); err != nil {
			return nil, fmt.Errorf("crl publisher: %w", err)
		}
	}
	auth.OnStatusChange(p.statusChanged)
	auth.OnIssuersChange(p.issuersChanged)
	return p, nil
}

// issuersChanged publishes at once for the issuers auth serves now, so that
// a new intermediate's CRLs exist before its first certificate is asked
// about and a destroyed one's are no longer served. A failure is logged:
// the next Publish tries again.
func (p *Publisher) issuersChanged(ctx context.Context) {
	if _, err := p.Publish(ctx); err != nil {
		p.log.ErrorContext(ctx, "CRLs after an issuer change", "error", err)
	}
}

// statusChanged marks the certificate's CRL for the debounced regeneration.
// It never blocks (ca.Authority.OnStatusChange).
func (p *Publisher) statusChanged(rec store.CertRecord) {
	p.mu.Lock()
	ic, ok := p.issuers[rec.IssuerID]
	if ok {
		ic.dirty[rec.CRLShard] = true
	}
	p.mu.Unlock()
	if !ok {
		return
	}
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

// sync makes the served issuers those auth serves: a new one (after an
// intermediate rotation) has its stored CRLs loaded, one no longer served
// (its key destroyed after its last certificate expired) is forgotten. It
// returns the served issuers, the active one first.
func (p *Publisher) sync(ctx context.Context) ([]ca.Issuer, error) {
	serving := p.auth.ServingIssuers()
	for _, iss := range serving {
		p.mu.RLock()
		_, ok := p.issuers[iss.ID]
		p.mu.RUnlock()
		if ok {
			continue
		}
		sigAlg, err := p.auth.CRLSignatureAlgorithm(iss.ID)
		if err != nil {
			return nil, fmt.Errorf("crl publisher: %w", err)
		}
		ic := &issuerCRLs{issuer: iss, sigAlg: sigAlg, crls: map[int]published{}, dirty: map[int]bool{}}
		if err := p.load(ctx, ic); err != nil {
			return nil, err
		}
		p.mu.Lock()
		if _, ok := p.issuers[iss.ID]; !ok {
			p.issuers[iss.ID] = ic
		}
		p.mu.Unlock()
	}
	p.mu.Lock()
	for id := range p.issuers {
		if !slices.ContainsFunc(serving, func(iss ca.Issuer) bool { return iss.ID == id }) {
			delete(p.issuers, id)
			p.log.InfoContext(ctx, "CRLs no longer published: the issuer's key was destroyed", "issuer", id)
		}
	}
	p.mu.Unlock()
	return serving, nil
}

// Start loads the stored CRLs, so that they are served at once, publishes
// those that are missing or expired, and then regenerates, after Debounce,
// those a revocation changed. The periodic regeneration of every CRL is the
// caller's (Publish, the crl-publish job), which replaces stale ones. Stop
// ends it.
func (p *Publisher) Start(ctx context.Context) error {
	serving, err := p.sync(ctx)
	if err != nil {
		return err
	}
	now := p.clk.Now()
	for _, iss := range serving {
		for _, shard := range p.shards(iss.ID) {
			// A stale but unexpired CRL is served until crl-publish replaces
			// it, which runs at start if it fell due (so the CRLs are not
			// generated twice).
			if c, ok := p.Current(iss.ID, shard); ok && now.Before(c.NextUpdate) {
				continue
			}
			if _, err := p.PublishShard(ctx, iss.ID, shard); err != nil {
				return err
			}
		}
	}
	p.bg.start(ctx, p.run)
	return nil
}

// Stop ends the regeneration after revocations started by Start and waits for a generation in
// progress to finish or give up.
func (p *Publisher) Stop() {
	p.bg.stop()
}

func (p *Publisher) run(ctx context.Context) {
	var debounce clockwork.Timer
	var fire <-chan time.Time
	defer func() {
		if debounce != nil {
			debounce.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.changed:
			// The first revocation starts the timer; later ones ride along,
			// so a CRL follows a burst within Debounce of its start.
			if fire == nil {
				debounce = p.clk.NewTimer(p.cfg.Debounce)
				fire = debounce.Chan()
			}
		case <-fire:
			fire = nil
			p.mu.Lock()
			dirty := map[string][]int{}
			for id, ic := range p.issuers {
				if len(ic.dirty) > 0 {
					dirty[id] = slices.Sorted(maps.Keys(ic.dirty))
					clear(ic.dirty)
				}
			}
			p.mu.Unlock()
			for id, shards := range dirty {
				for _, shard := range shards {
					if _, err := p.PublishShard(ctx, id, shard); err != nil {
						// The next Publish (crl-publish) regenerates every CRL.
						p.log.ErrorContext(ctx, "CRL generation after revocation", "issuer", id, "shard", shard, "error", err)
					}
				}
			}
		}
	}
}

// load reads the stored CRLs of ic's issuer into ic, not yet shared.
func (p *Publisher) load(ctx context.Context, ic *issuerCRLs) error {
	recs, err := p.st.CRLs(ctx, ic.issuer.ID)
	if err != nil {
		return fmt.Errorf("load crls of %s: %w", ic.issuer.ID, err)
	}
	for _, r := range recs {
		if c, ok := ic.crls[r.Shard]; !ok || r.Number > c.rec.Number {
			ic.crls[r.Shard] = newPublished(r)
		}
	}
	return nil
}

func newPublished(r store.CRLRecord) published {
	return published{rec: r, etag: `"` + strconv.Itoa(r.Shard) + "-" + strconv.FormatInt(r.Number, 10) + `"`}
}

// shards lists what is published for issuerID: the whole CRL (0), every
// configured shard, and any shard published before (a certificate assigned
// to it still names it, even if the configuration has since changed).
func (p *Publisher) shards(issuerID string) []int {
	set := map[int]bool{0: true}
	for s := 1; s <= p.auth.CRLShards(); s++ {
		set[s] = true
	}
	p.mu.RLock()
	if ic, ok := p.issuers[issuerID]; ok {
		for s := range ic.crls {
			set[s] = true
		}
	}
	p.mu.RUnlock()
	return slices.Sorted(maps.Keys(set))
}

func (p *Publisher) issuer(id string) (*issuerCRLs, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	ic, ok := p.issuers[id]
	return ic, ok
}

// Current returns the CRL served for issuerID and shard, if any.
func (p *Publisher) Current(issuerID string, shard int) (store.CRLRecord, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	ic, ok := p.issuers[issuerID]
	if !ok {
		return store.CRLRecord{}, false
	}
	c, ok := ic.crls[shard]
	return c.rec, ok
}

// Publish regenerates every CRL of every served issuer now, after taking
// up an issuer a rotation added or dropping one whose key was destroyed.
// It tries every shard, and returns how many it published and the errors
// of those that failed.
func (p *Publisher) Publish(ctx context.Context) (int, error) {
	serving, err := p.sync(ctx)
	if err != nil {
		return 0, err
	}
	var errs []error
	n := 0
	for _, iss := range serving {
		for _, shard := range p.shards(iss.ID) {
			if _, err := p.PublishShard(ctx, iss.ID, shard); err != nil {
				errs = append(errs, err)
				continue
			}
			n++
		}
	}
	return n, errors.Join(errs...)
}

// PublishShard generates, signs and stores the next CRL of issuerID's shard
// and serves it from then on. Its number is one above the latest stored (by
// this process or another sharing the database), and it lists the revoked
// certificates of the shard that had not expired when the previous CRL was
// issued, or were revoked since. An issuer the CA does not serve is an
// error.
func (p *Publisher) PublishShard(ctx context.Context, issuerID string, shard int) (store.CRLRecord, error) {
	p.genMu.Lock()
	defer p.genMu.Unlock()
	ic, ok := p.issuer(issuerID)
	if !ok {
		// Added by a rotation since the last sync, or not served at all.
		if _, err := p.sync(ctx); err != nil {
			return store.CRLRecord{}, err
		}
		if ic, ok = p.issuer(issuerID); !ok {
			return store.CRLRecord{}, fmt.Errorf("crl %s/%d: issuer not served here", issuerID, shard)
		}
	}
	start := p.clk.Now()
	rec, entries, err := p.generate(ctx, ic, shard, start)
	if err != nil {
		p.metrics.observeFailure()
		return store.CRLRecord{}, fmt.Errorf("crl %s/%d: %w", issuerID, shard, err)
	}
	d := p.clk.Since(start)
	p.mu.Lock()
	ic.crls[shard] = newPublished(rec)
	p.mu.Unlock()
	p.metrics.observe(issuerID, shard, len(rec.DER), entries, rec.Number, d)
	p.log.DebugContext(ctx, "CRL published", "issuer", issuerID, "shard", shard, "number", rec.Number,
		"entries", entries, "bytes", len(rec.DER), "duration", d)
	if p.afterPublish != nil {
		p.afterPublish(rec)
	}
	return rec, nil
}

func (p *Publisher) generate(ctx context.Context, ic *issuerCRLs, shard int, now time.Time) (store.CRLRecord, int, error) {
	iss := ic.issuer
	cur, _ := p.Current(iss.ID, shard)
	prev := store.CRLHead{Number: cur.Number, ThisUpdate: cur.ThisUpdate, Size: len(cur.DER)}
	stored, err := p.st.CRLHead(ctx, iss.ID, shard)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return store.CRLRecord{}, 0, err
	case stored.Number > prev.Number:
		prev = stored // another node published since
	}
	thisUpdate := now.UTC().Truncate(time.Second)
	head := tbsHead{
		sigAlg:     ic.sigAlg,
		issuer:     iss.Cert.RawSubject,
		thisUpdate: thisUpdate,
		nextUpdate: thisUpdate.Add(p.cfg.Validity),
		number:     prev.Number + 1,
		aki:        iss.Cert.SubjectKeyId,
	}
	// A shard, or the whole CRL when there are shards too, says which part
	// of the issuer's revocations it is.
	if shard != 0 || len(p.shards(iss.ID)) > 1 {
		head.idpURI = p.auth.CRLURL(iss.ID, shard)
	}
	// The previous CRL's size, with room for growth, sizes the buffer once,
	// so that a large CRL is not regrown (and copied) entry by entry.
	enc, err := newTBSBuilder(head, prev.Size+prev.Size/8+64<<10)
	if err != nil {
		return store.CRLRecord{}, 0, err
	}
	if err := p.st.RevokedCertificates(ctx, iss.ID, shard, prev.ThisUpdate, enc.add); err != nil {
		return store.CRLRecord{}, 0, err
	}
	entries := enc.n
	tbs, err := enc.finish()
	if err != nil {
		return store.CRLRecord{}, 0, err
	}
	sig, err := p.auth.CRLSignature(ctx, iss.ID, tbs)
	if err != nil {
		return store.CRLRecord{}, 0, err
	}
	der, err := enc.certificateList(ic.sigAlg, sig)
	if err != nil {
		return store.CRLRecord{}, 0, err
	}
	rec := store.CRLRecord{IssuerID: iss.ID, Shard: shard, Number: head.number,
		ThisUpdate: head.thisUpdate, NextUpdate: head.nextUpdate, DER: der}
	// A CRL is a statement signed by the issuer key, so the audit chain
	// records each one, with its digest, in the transaction that stores it.
	sum := sha256.Sum256(der)
	ev := audit.Event{Time: now, Actor: "system:crl", Action: audit.ActionCRLPublished, Target: iss.ID + "/" + strconv.Itoa(shard),
		Detail: map[string]string{"number": strconv.FormatInt(head.number, 10), "entries": strconv.Itoa(entries),
			"this_update": head.thisUpdate.Format(time.RFC3339), "next_update": head.nextUpdate.Format(time.RFC3339),
			"sha256": hex.EncodeToString(sum[:])}}
	if err := update(ctx, p.st, func(tx Tx) error {
		if err := tx.PutCRL(rec); err != nil {
			return err
		}
		_, err := tx.AppendAudit(ev)
		return err
	}); err != nil {
		return store.CRLRecord{}, 0, err
	}
	return rec, entries, nil
}
