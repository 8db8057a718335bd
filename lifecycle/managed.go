package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/lifecycle/managed"
	"github.com/sigil-ca/sigil/store"
)

// ManagedCerts is what the managed-renew job calls in lifecycle/managed
// (managed.Service).
type ManagedCerts interface {
	MarkIssuerDue(ctx context.Context) (int64, error)
	Due(ctx context.Context, after store.DueCursor, limit int) ([]store.ManagedRecord, error)
	PrepareRenewal(ctx context.Context, m store.ManagedRecord, actor string, manual bool) (*managed.PreparedRenewal, error)
	CommitRenewal(ctx context.Context, p *managed.PreparedRenewal) (*managed.Renewal, error)
	DueRevocations(ctx context.Context, after store.DueCursor, limit int) ([]store.ManagedVersion, error)
	RevokeSuperseded(ctx context.Context, v store.ManagedVersion, actor string) (bool, error)
	DueKeys(ctx context.Context, after store.DueCursor, limit int) ([]store.ManagedKey, error)
	DestroyKey(ctx context.Context, k store.ManagedKey, actor string) error
}

// ManagedRenewJob is the name of the job that renews managed certificates.
const ManagedRenewJob = "managed-renew"

// ManagedRenewConfig configures ManagedRenewTask.
type ManagedRenewConfig struct {
	// Batch is how many due records one indexed query reads (default 256).
	Batch int
	// Signers is how many renewals are prepared (key generated, certificate
	// linted and signed: the CPU-bound half) at once; default: half the
	// CPUs, at least one, so that API issuance keeps CPU to run on.
	Signers int
	// Workers is how many prepared renewals, revocations or destructions
	// are committing at once (default 8). Each is its own short
	// transaction, so concurrent ones share the store's group commits and
	// API issuance interleaves with them instead of waiting behind one
	// long transaction; more in flight renew faster but make an API
	// commit wait behind more of them (BenchmarkManagedRenew).
	Workers int
	Logger  *slog.Logger
}

// ManagedRenewTask returns the managed-renew job's work. Each run
//
//  1. marks managed certificates issued by an intermediate that is no
//     longer active due (managed.Service.MarkIssuerDue);
//  2. renews every managed certificate whose renewal is due, found page by
//     page through an index in due order, with Workers renewals in flight;
//  3. revokes the superseded versions whose overlap has passed;
//  4. destroys the retired keys whose last certificate has expired.
//
// All of it is driven by due times in the store, so work a run does not
// reach (the server stopped, or a renewal failed) is done by a later one.
// One failure does not stop the rest: the run's error counts failures and
// quotes the first few. Items are the renewals, revocations and
// destructions done.
func ManagedRenewTask(cfg ManagedRenewConfig, a ManagedCerts) (Task, error) {
	if a == nil || cfg.Logger == nil {
		return nil, errors.New("lifecycle: managed renewal needs the managed-certificate service and a logger")
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 256
	}
	if cfg.Signers <= 0 {
		cfg.Signers = max(1, runtime.GOMAXPROCS(0)/2)
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 8
	}
	r := &managedRenewer{cfg: cfg, a: a}
	return r.run, nil
}

type managedRenewer struct {
	cfg ManagedRenewConfig
	a   ManagedCerts
}

const managedActor = "system:" + ManagedRenewJob

// tally counts what a run did and keeps its first failures.
type tally struct {
	mu      sync.Mutex
	done    int64
	skipped int64
	failed  int64
	first   []string
}

func (t *tally) ok() {
	t.mu.Lock()
	t.done++
	t.mu.Unlock()
}

func (t *tally) skip() {
	t.mu.Lock()
	t.skipped++
	t.mu.Unlock()
}

func (t *tally) fail(what string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failed++
	if len(t.first) < 3 {
		t.first = append(t.first, fmt.Sprintf("%s: %v", what, err))
	}
}

func (r *managedRenewer) run(ctx context.Context) (Result, error) {
	log := r.cfg.Logger
	var renewed, revoked, destroyed, other tally
	if n, err := r.a.MarkIssuerDue(ctx); err != nil {
		other.fail("issuer check", err)
	} else if n > 0 {
		log.InfoContext(ctx, "managed certificates of a former intermediate made due", "count", n)
	}
	rotated := int64(0)
	var rotMu, seenMu sync.Mutex
	seen := map[string]bool{}
	pipeline(ctx, r.cfg, &other, "due managed certificates",
		func(c store.DueCursor) ([]store.ManagedRecord, store.DueCursor, error) {
			ms, err := r.a.Due(ctx, c, r.cfg.Batch)
			if len(ms) > 0 {
				last := ms[len(ms)-1]
				c = store.DueCursor{Due: last.RenewDue, Key: last.Name}
			}
			return ms, c, err
		},
		func(m store.ManagedRecord) *managed.PreparedRenewal {
			// A version whose renewal point passed at issuance (a tiny
			// renew-at) is due again at once: once per run is enough.
			seenMu.Lock()
			again := seen[m.Name]
			seen[m.Name] = true
			seenMu.Unlock()
			if again {
				return nil
			}
			p, err := r.a.PrepareRenewal(ctx, m, managedActor, false)
			switch {
			case ca.KindOf(err) == ca.Conflict || (err == nil && p == nil):
				renewed.skip() // deleted meanwhile, or no longer due
			case err != nil:
				renewed.fail("renew "+m.Name, err)
			}
			return p
		},
		func(p *managed.PreparedRenewal) {
			res, err := r.a.CommitRenewal(ctx, p)
			switch {
			case ca.KindOf(err) == ca.Conflict:
				renewed.skip() // renewed or deleted meanwhile
			case err != nil:
				renewed.fail("renew "+p.Name(), err)
			default:
				renewed.ok()
				if res.Rotated {
					rotMu.Lock()
					rotated++
					rotMu.Unlock()
				}
				log.DebugContext(ctx, "managed certificate renewed", "managed", res.Name, "version", res.Version,
					"serial", res.Serial, "key_id", res.KeyID, "rotated", res.Rotated, "reason", res.Reason)
			}
		})
	drain(ctx, r.cfg, &other, "due managed revocations",
		func(c store.DueCursor) ([]store.ManagedVersion, store.DueCursor, error) {
			vs, err := r.a.DueRevocations(ctx, c, r.cfg.Batch)
			if len(vs) > 0 {
				last := vs[len(vs)-1]
				c = store.DueCursor{Due: last.RevokeDue, Key: last.Serial}
			}
			return vs, c, err
		},
		func(v store.ManagedVersion) {
			did, err := r.a.RevokeSuperseded(ctx, v, managedActor)
			switch {
			case ca.KindOf(err) == ca.Conflict:
				revoked.skip()
			case err != nil:
				revoked.fail(fmt.Sprintf("revoke %s version %d", v.Name, v.Version), err)
			case did:
				revoked.ok()
			default:
				revoked.skip() // revoked or expired already
			}
		})
	drain(ctx, r.cfg, &other, "due managed key destructions",
		func(c store.DueCursor) ([]store.ManagedKey, store.DueCursor, error) {
			ks, err := r.a.DueKeys(ctx, c, r.cfg.Batch)
			if len(ks) > 0 {
				last := ks[len(ks)-1]
				c = store.DueCursor{Due: last.DestroyDue, Key: last.KeyID}
			}
			return ks, c, err
		},
		func(k store.ManagedKey) {
			if err := r.a.DestroyKey(ctx, k, managedActor); err != nil {
				destroyed.fail("destroy key "+k.KeyID+" of "+k.Name, err)
				return
			}
			destroyed.ok()
		})
	items := renewed.done + revoked.done + destroyed.done
	failed := renewed.failed + revoked.failed + destroyed.failed + other.failed
	if items > 0 || failed > 0 {
		log.InfoContext(ctx, "managed certificates", "renewed", renewed.done, "rotated", rotated, "revoked", revoked.done,
			"keys_destroyed", destroyed.done, "skipped", renewed.skipped+revoked.skipped, "failed", failed)
	}
	if err := ctx.Err(); err != nil {
		return Result{Items: items}, fmt.Errorf("managed renewal stopped: %w", err)
	}
	if failed > 0 {
		var first []string
		for _, t := range []*tally{&other, &renewed, &revoked, &destroyed} {
			first = append(first, t.first...)
		}
		if len(first) > 3 {
			first = first[:3]
		}
		return Result{Items: items}, fmt.Errorf("%d managed certificate operations failed (%d renewals of %d); first: %v",
			failed, renewed.failed, renewed.done+renewed.failed+renewed.skipped, first)
	}
	return Result{Items: items}, nil
}

// pipeline is drain in two stages: cfg.Signers goroutines prepare each
// item (the CPU-bound half; nil: nothing to commit) and cfg.Workers
// goroutines commit what was prepared, so that CPU use stays bounded while
// enough commits are in flight to share fsyncs.
func pipeline[T, P any](ctx context.Context, cfg ManagedRenewConfig, t *tally, what string,
	fetch func(store.DueCursor) ([]T, store.DueCursor, error), prepare func(T) *P, commit func(*P)) {
	ready := make(chan *P, cfg.Workers)
	var committers sync.WaitGroup
	for range cfg.Workers {
		committers.Add(1)
		go func() {
			defer committers.Done()
			for p := range ready {
				if ctx.Err() == nil {
					commit(p)
				}
			}
		}()
	}
	prep := cfg
	prep.Workers = cfg.Signers
	drain(ctx, prep, t, what, fetch, func(it T) {
		if p := prepare(it); p != nil {
			ready <- p
		}
	})
	close(ready)
	committers.Wait()
}

// drain reads pages of due work with fetch, in order, and runs work on each
// item with cfg.Workers goroutines, until a page comes back empty or ctx is
// done. A fetch error is counted in t and ends the phase.
func drain[T any](ctx context.Context, cfg ManagedRenewConfig, t *tally, what string,
	fetch func(store.DueCursor) ([]T, store.DueCursor, error), work func(T)) {
	items := make(chan T, cfg.Batch)
	var wg sync.WaitGroup
	for range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range items {
				if ctx.Err() != nil {
					continue // drain the queue without working
				}
				work(it)
			}
		}()
	}
	var cursor store.DueCursor
	for ctx.Err() == nil {
		page, next, err := fetch(cursor)
		if err != nil {
			t.fail(what, err)
			break
		}
		if len(page) == 0 {
			break
		}
		cursor = next
		for _, it := range page {
			items <- it
		}
	}
	close(items)
	wg.Wait()
}
