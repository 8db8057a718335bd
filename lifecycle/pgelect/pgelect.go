// Package pgelect elects the job runner of a Sigil cluster in PostgreSQL:
// the node that holds a session-level advisory lock leads. The lock lives
// as long as the node's database session, so a node that dies (or loses
// the database) gives it up as soon as PostgreSQL sees the session end,
// and the next node to ask takes it.
package pgelect

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrNotLeader means another node holds the lock.
var ErrNotLeader = errors.New("pgelect: another node leads")

// Elector implements lifecycle.Elector over one advisory lock. It keeps
// one connection of the pool while it leads.
type Elector struct {
	pool *pgxpool.Pool
	key  int64

	mu   sync.Mutex
	conn *pgxpool.Conn // non-nil while leading: the session holding the lock
}

// New returns an elector for the election named name (nodes that share a
// database and a name elect one leader) over pool.
func New(pool *pgxpool.Pool, name string) *Elector {
	h := fnv.New64a()
	h.Write([]byte("sigil/pgelect/" + name))
	return &Elector{pool: pool, key: int64(h.Sum64())}
}

// IsLeader returns nil while this node holds the lock, taking it when it
// is free. A held session that no longer answers is dropped (its lock went
// with it) and the lock asked for again on a fresh one.
func (e *Elector) IsLeader(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conn != nil {
		// A session-level lock lasts as long as its session: a live
		// session still holds it.
		err := e.conn.Ping(ctx)
		if err == nil {
			return nil
		}
		e.dropLocked()
		if ctx.Err() != nil {
			return fmt.Errorf("pgelect: check the session: %w", err)
		}
	}
	conn, err := e.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("pgelect: connect: %w", err)
	}
	var got bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", e.key).Scan(&got); err != nil {
		conn.Release()
		return fmt.Errorf("pgelect: take the lock: %w", err)
	}
	if !got {
		conn.Release()
		return ErrNotLeader
	}
	e.conn = conn
	return nil
}

// SessionPID is the PostgreSQL backend of the session holding the lock,
// 0 when not leading (for logs and tests).
func (e *Elector) SessionPID() uint32 {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conn == nil {
		return 0
	}
	return e.conn.Conn().PgConn().PID()
}

// Close gives the lead up, if held.
func (e *Elector) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conn == nil {
		return
	}
	_, _ = e.conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", e.key)
	e.conn.Release()
	e.conn = nil
}

// dropLocked closes the held session rather than returning it to the
// pool: a session of unknown state may still hold the lock.
func (e *Elector) dropLocked() {
	_ = e.conn.Conn().Close(context.Background())
	e.conn.Release()
	e.conn = nil
}
