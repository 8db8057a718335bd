package postgres

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jonboulle/clockwork"
	"github.com/transparency-dev/merkle/compact"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

// groupCommit is this node's writer. Callers queue functions; the writer
// runs every queued function in one transaction, each inside its own
// savepoint, and commits once, so N concurrent writers share one commit and
// one hold of the chain lock.
//
// Each batch takes the advisory lock chainLock first, the way SQLite's
// BEGIN IMMEDIATE takes its write lock: batches from every node sharing the
// database run one at a time, so the audit head and the log range read at
// the start of a batch stay the head until it commits, and the chain and the
// log stay single and linear. Writes that need no append (nonces, ACME
// state) are serialised too; group commit keeps the lock's cost per write
// small (see Config.OnLockHeld).
type groupCommit struct {
	pool       *pgxpool.Pool
	maxBatch   int
	onCommit   func(time.Duration, int)
	onLockHeld func(time.Duration, int)
	clk        clockwork.Clock
	log        *slog.Logger
	// instance tells this store's own status notifications from other
	// nodes' (WatchStatus skips its own).
	instance string

	reqs chan *writeReq
	done chan struct{}

	mu     sync.Mutex // guards closed; held by submit while it queues
	closed bool

	// cpMu guards cp. It is not mu: a submitter holds mu while it waits for
	// room in a full queue, so the writer, which empties the queue, must
	// never wait for mu.
	cpMu sync.Mutex
	cp   store.Checkpointer

	// Owned by the writer goroutine.
	head   audit.Head
	lastCP int64
	// tree is the transparency log's compact range [0, size) as committed
	// plus this batch's appends (nil: reload at the next batch); logSaved
	// is its state before the running savepoint's first append.
	rf       *compact.RangeFactory
	tree     *compact.Range
	logSaved *compact.Range
	// signed holds the checkpoints and tree heads signed in the running
	// transaction, handed to Checkpointer.Publish once it commits.
	signedCPs   []audit.Checkpoint
	signedHeads []audit.TreeHead
	// pending are savepoint statements not sent yet: each function's
	// SAVEPOINT, and the previous one's RELEASE, go in one pipeline with
	// its first statement, so a write costs no round trips of its own for
	// them while the chain lock is held. spOpen says the running
	// function's savepoint was sent (then a failure rolls back to it).
	pending []string
	spOpen  bool
	// locked: the running transaction holds the chain lock (lockChain);
	// lockedInFn: the running function's savepoint took it; lockedAt:
	// when the batch first took it; wrote: an earlier function of the
	// batch wrote (holds row locks).
	locked, lockedInFn, wrote bool
	lockedAt                  time.Time
}

type writeReq struct {
	ctx  context.Context
	fn   func(store.Tx) error
	err  chan error
	kind int
}

const (
	reqTx = iota
	reqCheckpoint
)

// maxRetries bounds how often one function is run again after a
// serialization failure or deadlock with a transaction this store does not
// order (another program writing the database, or a node's reads under
// SERIALIZABLE).
const maxRetries = 5

func newGroupCommit(pool *pgxpool.Pool, cfg Config, head audit.Head) *groupCommit {
	g := &groupCommit{
		instance:   rand.Text(),
		pool:       pool,
		maxBatch:   cfg.MaxBatch,
		onCommit:   cfg.OnCommit,
		onLockHeld: cfg.OnLockHeld,
		clk:        cfg.Clock,
		log:        cfg.Logger,
		reqs:       make(chan *writeReq, cfg.MaxBatch),
		done:       make(chan struct{}),
		head:       head,
		rf:         newRangeFactory(),
	}
	go g.run()
	return g
}

// exec runs q in tx, preceded by the pending savepoint statements in the
// same round trip (see applyOnce).
func (g *groupCommit) exec(ctx context.Context, tx pgx.Tx, q string, args ...any) (result, error) {
	if len(g.pending) == 0 {
		tag, err := tx.Exec(ctx, rebind(q), args...)
		return result{tag}, err
	}
	br, err := g.sendPending(ctx, tx, q, args)
	if err != nil {
		return result{}, err
	}
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return result{tag}, err
}

// queryRow is exec for a statement that returns one row.
func (g *groupCommit) queryRow(ctx context.Context, tx pgx.Tx, q string, args ...any) pgx.Row {
	if len(g.pending) == 0 {
		return tx.QueryRow(ctx, rebind(q), args...)
	}
	br, err := g.sendPending(ctx, tx, q, args)
	if err != nil {
		return errRow{err}
	}
	return batchRow{br: br, row: br.QueryRow()}
}

// query runs q in tx after the pending savepoint statements (one round
// trip more: rows cannot share a pipeline that is closed before they are read).
func (g *groupCommit) query(ctx context.Context, tx pgx.Tx, q string, args ...any) (pgx.Rows, error) {
	if err := g.flush(ctx, tx); err != nil {
		return nil, err
	}
	return tx.Query(ctx, rebind(q), args...)
}

// flush sends the pending savepoint statements now.
func (g *groupCommit) flush(ctx context.Context, tx pgx.Tx) error {
	if len(g.pending) == 0 {
		return nil
	}
	_, err := g.exec(ctx, tx, "SELECT 1")
	return err
}

// sendPending sends the pending statements and q in one pipeline and reads
// the pending ones' results; q's is the caller's to read, then to Close.
func (g *groupCommit) sendPending(ctx context.Context, tx pgx.Tx, q string, args []any) (pgx.BatchResults, error) {
	var b pgx.Batch
	for _, p := range g.pending {
		b.Queue(p)
		if p == qSavepoint {
			g.spOpen = true
		}
	}
	n := len(g.pending)
	g.pending = g.pending[:0]
	b.Queue(rebind(q), args...)
	br := tx.SendBatch(ctx, &b)
	for range n {
		if _, err := br.Exec(); err != nil {
			return nil, errors.Join(fmt.Errorf("savepoint: %w", err), br.Close())
		}
	}
	return br, nil
}

// batchRow is the row of a pipelined statement: scanning it ends the pipeline.
type batchRow struct {
	br  pgx.BatchResults
	row pgx.Row
}

func (r batchRow) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	if cerr := r.br.Close(); err == nil {
		err = cerr
	}
	return err
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

func (g *groupCommit) setCheckpointer(cp store.Checkpointer) {
	g.cpMu.Lock()
	g.cp = cp
	g.cpMu.Unlock()
}

func (g *groupCommit) checkpointer() store.Checkpointer {
	g.cpMu.Lock()
	defer g.cpMu.Unlock()
	return g.cp
}

func (g *groupCommit) submit(ctx context.Context, kind int, fn func(store.Tx) error) error {
	r := &writeReq{ctx: ctx, fn: fn, err: make(chan error, 1), kind: kind}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return store.ErrClosed
	}
	// Sending under the lock keeps stop() from closing the queue mid-send.
	select {
	case g.reqs <- r:
		g.mu.Unlock()
	case <-ctx.Done():
		g.mu.Unlock()
		return ctx.Err()
	}
	// Once queued, the outcome is always awaited: returning early would let a
	// caller believe a write failed that may yet commit.
	err := <-r.err
	if err != nil && !errors.Is(err, store.ErrFull) && isFull(err) {
		return fmt.Errorf("%w: %w", store.ErrFull, err)
	}
	return err
}

func (g *groupCommit) stop() {
	g.mu.Lock()
	if !g.closed {
		g.closed = true
		close(g.reqs)
	}
	g.mu.Unlock()
	<-g.done
}

func (g *groupCommit) run() {
	defer close(g.done)
	batch := make([]*writeReq, 0, g.maxBatch)
	for {
		r, ok := <-g.reqs
		if !ok {
			return
		}
		batch = append(batch[:0], r)
	drain:
		for len(batch) < g.maxBatch {
			select {
			case r, ok := <-g.reqs:
				if !ok {
					break drain
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		g.commit(batch)
	}
}

// commit runs batch in one transaction and answers every request; the
// requests that found the chain lock taken after earlier ones of the batch
// wrote (errChainBusy) run again in a batch of their own.
func (g *groupCommit) commit(batch []*writeReq) {
	for len(batch) > 0 {
		batch = g.commitOnce(batch)
	}
}

// errChainBusy is a function's first chain append finding the chain lock
// taken by another node while the batch already holds row locks of earlier
// functions: waiting could deadlock (that node may wait for those rows), so
// the function runs again, first in the next batch.
var errChainBusy = errors.New("store: audit chain busy")

// commitOnce runs batch in one transaction, answers every request but
// those that returned errChainBusy, and returns them.
func (g *groupCommit) commitOnce(batch []*writeReq) (again []*writeReq) {
	start := g.clk.Now()
	errs := make([]error, len(batch))
	ctx := context.Background()
	fail := func(err error) {
		for _, r := range batch {
			r.err <- err
		}
	}
	g.locked, g.lockedAt, g.wrote = false, time.Time{}, false
	// READ COMMITTED: the chain lock orders every append, and each guarded
	// UPDATE sees the latest committed row.
	tx, err := g.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		fail(fmt.Errorf("begin: %w", err))
		return nil
	}
	g.signedCPs, g.signedHeads = g.signedCPs[:0], g.signedHeads[:0]
	for i, r := range batch {
		if r.kind == reqCheckpoint {
			errs[i] = g.apply(ctx, tx, func(store.Tx) error { return g.forceCheckpoint(ctx, tx) })
			continue
		}
		if err := r.ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		errs[i] = g.apply(ctx, tx, r.fn)
		// Checked per transaction, not per batch, so that no more than
		// Every events (plus one transaction's own) ever go unsigned.
		if errs[i] == nil && g.checkpointDue() {
			if err := g.apply(ctx, tx, func(store.Tx) error { return g.forceCheckpoint(ctx, tx) }); err != nil {
				g.log.Error("audit checkpoint failed; will retry", "seq", g.head.Seq, "error", err)
			}
		}
	}
	g.pending = g.pending[:0] // a RELEASE at most: COMMIT releases every savepoint
	if err := tx.Commit(ctx); err != nil {
		g.locked, g.tree = false, nil
		fail(fmt.Errorf("commit: %w", err))
		return nil
	}
	end := g.clk.Now()
	if g.onCommit != nil {
		g.onCommit(end.Sub(start), len(batch))
	}
	if g.onLockHeld != nil && !g.lockedAt.IsZero() {
		g.onLockHeld(end.Sub(g.lockedAt), len(batch))
	}
	g.locked = false
	if cp := g.checkpointer(); cp.Publish != nil && len(g.signedCPs)+len(g.signedHeads) > 0 {
		cp.Publish(slices.Clone(g.signedCPs), slices.Clone(g.signedHeads))
	}
	for i, r := range batch {
		if errors.Is(errs[i], errChainBusy) {
			again = append(again, r)
			continue
		}
		r.err <- errs[i]
	}
	return again
}

// lockChain takes the chain lock for the running transaction, if it does
// not hold it, and reads the audit head and log range as committed: they
// stay the chain's until the commit. Batches that append nothing (spent
// nonces, ACME state, OCSP responses) never take it.
//
// It is taken inside the running function's savepoint: should that roll
// back, the lock goes with it (PostgreSQL releases a subtransaction's
// locks), and the next append takes it again. Once earlier functions of
// the batch have written, it is only tried (errChainBusy when taken).
func (g *groupCommit) lockChain(ctx context.Context, tx pgx.Tx) error {
	if g.locked {
		return nil
	}
	if g.wrote {
		var got bool
		if err := g.queryRow(ctx, tx, "SELECT pg_try_advisory_xact_lock(?)", chainLock).Scan(&got); err != nil {
			return fmt.Errorf("lock audit chain: %w", err)
		}
		if !got {
			return errChainBusy
		}
	} else if _, err := g.exec(ctx, tx, "SELECT pg_advisory_xact_lock(?)", chainLock); err != nil {
		return fmt.Errorf("lock audit chain: %w", err)
	}
	g.locked, g.lockedInFn = true, true
	if g.lockedAt.IsZero() {
		g.lockedAt = g.clk.Now()
	}
	if err := errors.Join(g.syncHead(ctx, tx), g.syncLog(ctx, tx)); err != nil {
		g.tree = nil
		return err
	}
	return nil
}

// syncHead reloads the audit head and the last signed checkpoint as
// committed, inside tx under the chain lock.
func (g *groupCommit) syncHead(ctx context.Context, tx pgx.Tx) error {
	h, cp := audit.Head{Seq: 0, Hash: audit.GenesisHash()}, int64(0)
	err := tx.QueryRow(ctx, qSyncHead).Scan(&h.Seq, &h.Hash, &cp)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("audit head: %w", err)
	}
	g.head, g.lastCP = h, cp
	return nil
}

// apply runs fn inside a savepoint so its failure rolls back only its own
// writes; a serialization failure or deadlock runs it again.
func (g *groupCommit) apply(ctx context.Context, tx pgx.Tx, fn func(store.Tx) error) error {
	for try := 0; ; try++ {
		err := g.applyOnce(ctx, tx, fn)
		if err == nil || !isRetryable(err) || try >= maxRetries {
			return err
		}
	}
}

func (g *groupCommit) applyOnce(ctx context.Context, tx pgx.Tx, fn func(store.Tx) error) (err error) {
	g.pending, g.spOpen, g.lockedInFn = append(g.pending, qSavepoint), false, false
	head, lastCP, nCPs, nHeads := g.head, g.lastCP, len(g.signedCPs), len(g.signedHeads)
	g.logSaved = nil
	t := &pgTx{ctx: ctx, tx: tx, g: g}
	restore := func() {
		g.head, g.lastCP = head, lastCP
		g.signedCPs, g.signedHeads = g.signedCPs[:nCPs], g.signedHeads[:nHeads]
		if g.logSaved != nil {
			g.tree = g.logSaved
		}
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("store: transaction function panicked: %v", p)
		}
		if !g.spOpen {
			// fn wrote nothing: its savepoint was never sent.
			g.pending = g.pending[:len(g.pending)-1]
			if err != nil {
				restore()
			}
			return
		}
		if err == nil {
			g.pending = append(g.pending, qRelease) // sent with the next statement, or ended by COMMIT
			g.wrote = true
			return
		}
		restore()
		if g.lockedInFn {
			g.locked = false // released with the savepoint
		}
		// One simple-protocol round trip: in the aborted subtransaction
		// only a ROLLBACK is accepted, not the prepare a pipeline starts with.
		if _, rbErr := tx.Exec(ctx, qRollbackTo+"; "+qRelease, pgx.QueryExecModeSimpleProtocol); rbErr != nil {
			err = errors.Join(err, rbErr)
		}
	}()
	return fn(t)
}

func (g *groupCommit) checkpointDue() bool {
	cp := g.checkpointer()
	// Without the lock the head is not known: nothing was appended.
	return g.locked && cp.Sign != nil && cp.Every > 0 && g.head.Seq-g.lastCP >= int64(cp.Every)
}

func (g *groupCommit) forceCheckpoint(ctx context.Context, tx pgx.Tx) error {
	cp := g.checkpointer()
	if cp.Sign == nil {
		return errors.New("store: no checkpoint signer configured")
	}
	if err := g.lockChain(ctx, tx); err != nil {
		return err
	}
	if g.head.Seq == 0 || g.head.Seq == g.lastCP {
		return nil
	}
	c, err := cp.Sign(g.head)
	if err != nil {
		return fmt.Errorf("sign checkpoint: %w", err)
	}
	_, err = g.exec(ctx, tx, `INSERT INTO audit_checkpoints (seq, hash, time, key_id, signature) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (seq) DO NOTHING`, c.Seq, c.Hash, nanos(c.Time), c.KeyID, c.Signature)
	if err != nil {
		return fmt.Errorf("insert checkpoint: %w", err)
	}
	g.lastCP = c.Seq
	g.signedCPs = append(g.signedCPs, c)
	return nil
}

// WithTx implements store.Store.
func (s *Store) WithTx(ctx context.Context, fn func(store.Tx) error) error {
	return s.gc.submit(ctx, reqTx, fn)
}

// Checkpoint implements store.Store.
func (s *Store) Checkpoint(ctx context.Context) error {
	return s.gc.submit(ctx, reqCheckpoint, nil)
}
