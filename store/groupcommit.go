package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/transparency-dev/merkle/compact"

	"github.com/sigil-ca/sigil/ca/audit"
)

// groupCommit owns the single write connection. Callers queue functions;
// the writer runs every queued function in one transaction, each inside its
// own savepoint, and commits once, so N concurrent writers share one fsync.
type groupCommit struct {
	db       *sql.DB
	maxBatch int
	onCommit func(time.Duration, int)
	clk      clockwork.Clock
	log      *slog.Logger

	reqs chan *writeReq
	quit chan struct{}
	done chan struct{}

	mu     sync.Mutex // guards closed; held by submit while it queues
	closed bool

	// cpMu guards cp. It is not mu: a submitter holds mu while it waits for
	// room in a full queue, so the writer, which empties the queue, must
	// never wait for mu.
	cpMu sync.Mutex
	cp   Checkpointer

	stmts map[string]*sql.Stmt // prepared writeQueries, read-only after start

	// Owned by the writer goroutine.
	head   audit.Head
	lastCP int64
	// tree is the transparency log's compact range [0, size) as committed
	// plus this batch's appends (nil: reload at the next batch); logSaved
	// is its state before the running savepoint's first append.
	rf       *compact.RangeFactory
	tree     *compact.Range
	logSaved *compact.Range
	noLog    bool // see Config.withoutLog
	// signed holds the checkpoints and tree heads signed in the running
	// transaction, handed to Checkpointer.Publish once it commits.
	signedCPs   []audit.Checkpoint
	signedHeads []audit.TreeHead
}

type writeReq struct {
	ctx  context.Context
	fn   func(Tx) error
	err  chan error
	kind int
}

const (
	reqTx = iota
	reqCheckpoint
)

func newGroupCommit(ctx context.Context, db *sql.DB, cfg Config, head audit.Head, lastCP int64) (*groupCommit, error) {
	stmts := make(map[string]*sql.Stmt)
	for _, q := range writeQueries() {
		st, err := db.PrepareContext(ctx, q)
		if err != nil {
			for _, p := range stmts {
				p.Close()
			}
			return nil, fmt.Errorf("prepare %q: %w", q, err)
		}
		stmts[q] = st
	}
	g := &groupCommit{
		db:       db,
		maxBatch: cfg.MaxBatch,
		onCommit: cfg.OnCommit,
		clk:      cfg.Clock,
		log:      cfg.Logger,
		reqs:     make(chan *writeReq, cfg.MaxBatch),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
		head:     head,
		lastCP:   lastCP,
		stmts:    stmts,
		rf:       newRangeFactory(),
		noLog:    cfg.withoutLog,
	}
	go g.run()
	return g, nil
}

// exec runs q in tx through its prepared statement when there is one.
func (g *groupCommit) exec(ctx context.Context, tx *sql.Tx, q string, args ...any) (sql.Result, error) {
	if st, ok := g.stmts[q]; ok {
		// Closed at once, not at commit: database/sql tracks every open
		// transaction statement in a map that never shrinks, so a batch of
		// a million statements would otherwise leave its peak size behind.
		ts := tx.StmtContext(ctx, st)
		defer ts.Close()
		return ts.ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, q, args...)
}

func (g *groupCommit) setCheckpointer(cp Checkpointer) {
	g.cpMu.Lock()
	g.cp = cp
	g.cpMu.Unlock()
}

func (g *groupCommit) checkpointer() Checkpointer {
	g.cpMu.Lock()
	defer g.cpMu.Unlock()
	return g.cp
}

func (g *groupCommit) submit(ctx context.Context, kind int, fn func(Tx) error) error {
	r := &writeReq{ctx: ctx, fn: fn, err: make(chan error, 1), kind: kind}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return ErrClosed
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
	if err != nil && !errors.Is(err, ErrFull) && isFull(err) {
		return fmt.Errorf("%w: %w", ErrFull, err)
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
	for _, st := range g.stmts {
		st.Close()
	}
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

// commit runs batch in one transaction and answers every request.
func (g *groupCommit) commit(batch []*writeReq) {
	start := g.clk.Now()
	errs := make([]error, len(batch))
	ctx := context.Background()
	tx, err := g.db.BeginTx(ctx, nil)
	if err != nil {
		for _, r := range batch {
			r.err <- fmt.Errorf("begin: %w", err)
		}
		return
	}
	// Another process may have appended to the chain since our last
	// commit (sigil ca root-crl signs offline while sigil serve runs): the
	// head cached from then would fork the chain, or collide on seq and fail
	// every later write. The write lock is held from BEGIN (IMMEDIATE), so
	// what is read here stays the head until this commit.
	if err := errors.Join(g.syncHead(ctx, tx), g.syncLog(ctx, tx)); err != nil {
		err = errors.Join(err, tx.Rollback())
		for _, r := range batch {
			r.err <- err
		}
		return
	}
	headBefore, cpBefore := g.head, g.lastCP
	g.signedCPs, g.signedHeads = g.signedCPs[:0], g.signedHeads[:0]
	for i, r := range batch {
		if r.kind == reqCheckpoint {
			errs[i] = g.forceCheckpoint(tx)
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
			if err := g.forceCheckpoint(tx); err != nil {
				g.log.Error("audit checkpoint failed; will retry", "seq", g.head.Seq, "error", err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		g.head, g.lastCP = headBefore, cpBefore
		g.tree = nil
		err = fmt.Errorf("commit: %w", err)
		for _, r := range batch {
			r.err <- err
		}
		return
	}
	if g.onCommit != nil {
		g.onCommit(g.clk.Since(start), len(batch))
	}
	if cp := g.checkpointer(); cp.Publish != nil && len(g.signedCPs)+len(g.signedHeads) > 0 {
		cp.Publish(slices.Clone(g.signedCPs), slices.Clone(g.signedHeads))
	}
	for i, r := range batch {
		r.err <- errs[i]
	}
}

// syncHead reloads the audit head and the last signed checkpoint as
// committed, inside tx.
func (g *groupCommit) syncHead(ctx context.Context, tx *sql.Tx) error {
	h, cp := audit.Head{Seq: 0, Hash: audit.GenesisHash()}, int64(0)
	ts := tx.StmtContext(ctx, g.stmts[qSyncHead])
	defer ts.Close() // as in exec: not left for the transaction to track
	err := ts.QueryRowContext(ctx).Scan(&h.Seq, &h.Hash, &cp)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("audit head: %w", err)
	}
	g.head, g.lastCP = h, cp
	return nil
}

// apply runs fn inside a savepoint so its failure rolls back only its own writes.
func (g *groupCommit) apply(ctx context.Context, tx *sql.Tx, fn func(Tx) error) (err error) {
	if _, err := g.exec(ctx, tx, qSavepoint); err != nil {
		return fmt.Errorf("savepoint: %w", err)
	}
	head := g.head
	g.logSaved = nil
	t := &sqliteTx{ctx: ctx, tx: tx, g: g}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("store: transaction function panicked: %v", p)
		}
		if err != nil {
			g.head = head
			if g.logSaved != nil {
				g.tree = g.logSaved
			}
			_, rbErr := g.exec(ctx, tx, qRollbackTo)
			_, relErr := g.exec(ctx, tx, qRelease)
			if rbErr != nil || relErr != nil {
				err = errors.Join(err, rbErr, relErr)
			}
			return
		}
		if _, relErr := g.exec(ctx, tx, qRelease); relErr != nil {
			g.head = head
			if g.logSaved != nil {
				g.tree = g.logSaved
			}
			err = fmt.Errorf("release savepoint: %w", relErr)
		}
	}()
	err = fn(t)
	return err
}

func (g *groupCommit) checkpointDue() bool {
	cp := g.checkpointer()
	return cp.Sign != nil && cp.Every > 0 && g.head.Seq-g.lastCP >= int64(cp.Every)
}

func (g *groupCommit) forceCheckpoint(tx *sql.Tx) error {
	cp := g.checkpointer()
	if cp.Sign == nil {
		return errors.New("store: no checkpoint signer configured")
	}
	if g.head.Seq == 0 || g.head.Seq == g.lastCP {
		return nil
	}
	c, err := cp.Sign(g.head)
	if err != nil {
		return fmt.Errorf("sign checkpoint: %w", err)
	}
	_, err = tx.Exec("INSERT INTO audit_checkpoints (seq, hash, time, key_id, signature) VALUES (?, ?, ?, ?, ?)",
		c.Seq, c.Hash, nanos(c.Time), c.KeyID, c.Signature)
	if err != nil && !isUnique(err) {
		return fmt.Errorf("insert checkpoint: %w", err)
	}
	g.lastCP = c.Seq
	g.signedCPs = append(g.signedCPs, c)
	return nil
}

var errReadOnly = errors.New("store: opened read-only")

// WithTx implements Store.
func (s *SQLite) WithTx(ctx context.Context, fn func(Tx) error) error {
	if s.gc == nil {
		return errReadOnly
	}
	return s.gc.submit(ctx, reqTx, fn)
}

// Checkpoint implements Store.
func (s *SQLite) Checkpoint(ctx context.Context) error {
	if s.gc == nil {
		return errReadOnly
	}
	return s.gc.submit(ctx, reqCheckpoint, nil)
}
