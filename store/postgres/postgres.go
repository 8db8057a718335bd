// Package postgres is the PostgreSQL backend of store.Store, for several
// Sigil nodes sharing one database (issue 17). It keeps the SQLite backend's
// semantics exactly: the same tables (migrations numbered alike), times as
// Unix nanoseconds in BIGINT columns, one audit chain and one transparency
// log whose appends are serialised in the database by an advisory lock.
//
// Times are BIGINT nanoseconds rather than timestamptz because timestamptz
// keeps microseconds: audit events are hashed with their nanosecond time,
// and every record must read back as the instant it was written, as it does
// from SQLite.
package postgres

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Config configures a PostgreSQL store.
type Config struct {
	// DSN is a libpq connection string or URL (postgres://...). Its
	// password, if any, is the caller's business: pass Password instead of
	// writing it into a configuration file.
	DSN string
	// Password, if set, replaces the DSN's password.
	Password string
	// MaxConns bounds the connection pool (default 8); one connection is the
	// writer's while a batch commits.
	MaxConns int32
	// MaxBatch bounds how many WithTx calls share one commit (default 256).
	MaxBatch int
	// OnCommit, if set, observes every commit: its latency and batch size.
	OnCommit func(latency time.Duration, batch int)
	// OnLockHeld, if set, observes how long each batch held the chain lock
	// (from acquiring it to the end of the commit) and how many writes it
	// carried.
	OnLockHeld func(held time.Duration, batch int)
	// Clock stamps migrations, tree heads and checkpoints, and measures
	// commits. Required: callers pass the clock their components share.
	Clock clockwork.Clock
	// Logger receives failures nobody waits for (default: discard).
	Logger *slog.Logger
}

// Store is the PostgreSQL Store backend.
type Store struct {
	pool *pgxpool.Pool
	gc   *groupCommit
	// noRollup counts every summary from the certificate table, not the
	// rollup tables (tests compare the two).
	noRollup bool

	closeOnce sync.Once
	closeErr  error
}

var _ store.Store = (*Store)(nil)

// Lock keys of pg_advisory_xact_lock: arbitrary constants, the same on
// every node. chainLock serialises every write batch (and so every audit
// and log append) across processes; migrateLock serialises migrations.
const (
	chainLock   int64 = 0x5369_6769_6c01 // "Sigil" 1
	migrateLock int64 = 0x5369_6769_6c02
)

// Open connects to the database cfg.DSN names and applies pending
// migrations; several processes may open the same database at once.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.DSN == "" {
		return nil, errors.New("postgres store: empty DSN")
	}
	if cfg.Clock == nil {
		// No default: a store on the wall clock beside an authority on
		// another clock judges its own records stale or young wrongly.
		return nil, errors.New("postgres store: config has no clock")
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 8
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 256
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	pool, err := Connect(ctx, cfg.DSN, cfg.Password, cfg.MaxConns)
	if err != nil {
		return nil, err
	}
	if err := migrate(ctx, pool, cfg.Clock.Now()); err != nil {
		pool.Close()
		return nil, err
	}
	s := &Store{pool: pool}
	head, err := s.AuditHead(ctx)
	if err != nil {
		pool.Close()
		return nil, err
	}
	s.gc = newGroupCommit(pool, cfg, head)
	return s, nil
}

// Connect opens a pool of at most maxConns connections to the database dsn
// names, with password (if not empty) instead of one in the DSN, and checks
// that it answers. The store opens its own; callers that need sessions of
// their own on the same database (the job runner's election) open another.
func Connect(ctx context.Context, dsn, password string, maxConns int32) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgconn's parse error may quote the DSN, password included.
		return nil, errors.New("postgres store: cannot parse the DSN")
	}
	if password != "" {
		pc.ConnConfig.Password = password
	}
	pc.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgres store: connect: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres store: connect: %w", err)
	}
	return pool, nil
}

// SetCheckpointer installs the audit checkpoint signer. Until it is set no
// checkpoints are written.
func (s *Store) SetCheckpointer(cp store.Checkpointer) { s.gc.setCheckpointer(cp) }

// Close stops the writer after pending transactions and closes the pool.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.gc.stop()
		s.pool.Close()
	})
	return s.closeErr
}

// migrate applies the embedded migrations the database lacks, all in one
// transaction under migrateLock, so that nodes starting together apply
// each once and none sees a half-migrated schema.
func migrate(ctx context.Context, pool *pgxpool.Pool, now time.Time) (err error) {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, tx.Rollback(ctx))
		}
	}()
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrateLock); err != nil {
		return fmt.Errorf("migrate: lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, applied BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var current int
	if err := tx.QueryRow(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&current); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	sort.Strings(names)
	for _, name := range names {
		base := strings.TrimPrefix(name, "migrations/")
		v, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return fmt.Errorf("migrate: bad migration name %q", name)
		}
		if v <= current {
			continue
		}
		body, err := migrationFS.ReadFile(name)
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		// The simple protocol runs a multi-statement script as one.
		if _, err := tx.Exec(ctx, string(body), pgx.QueryExecModeSimpleProtocol); err != nil {
			return fmt.Errorf("migrate %s: %w", base, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, applied) VALUES ($1, $2)", v, now.UnixNano()); err != nil {
			return fmt.Errorf("migrate %s: %w", base, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// rebind turns the ? placeholders the queries are written with (as the
// SQLite backend's are) into PostgreSQL's $1, $2, ... None of the queries
// has a ? inside a literal.
func rebind(q string) string {
	if !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

func (s *Store) query(ctx context.Context, q string, args ...any) (pgx.Rows, error) {
	return s.pool.Query(ctx, rebind(q), args...)
}

func (s *Store) queryRow(ctx context.Context, q string, args ...any) pgx.Row {
	return s.pool.QueryRow(ctx, rebind(q), args...)
}

// result is an Exec's outcome with database/sql's RowsAffected shape.
type result struct{ tag pgconn.CommandTag }

func (r result) RowsAffected() (int64, error) { return r.tag.RowsAffected(), nil }

// SQLSTATE codes the store maps or retries.
const (
	codeUnique        = "23505"
	codeSerialization = "40001"
	codeDeadlock      = "40P01"
	codeDiskFull      = "53100"
)

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func isUnique(err error) bool { return pgCode(err) == codeUnique }

// isRetryable reports a conflict with another transaction that running
// the same work again resolves.
func isRetryable(err error) bool {
	c := pgCode(err)
	return c == codeSerialization || c == codeDeadlock
}

func isFull(err error) bool { return pgCode(err) == codeDiskFull }

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// AuditHead implements store.Store.
func (s *Store) AuditHead(ctx context.Context) (audit.Head, error) {
	var h audit.Head
	err := s.queryRow(ctx, "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1").Scan(&h.Seq, &h.Hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return audit.Head{Seq: 0, Hash: audit.GenesisHash()}, nil
	}
	if err != nil {
		return audit.Head{}, fmt.Errorf("audit head: %w", err)
	}
	return h, nil
}

// SchemaDigest identifies the embedded migrations (a SHA-256 prefix of
// their names and contents): a database migrated by one build can stand
// in for another's when their digests are equal. Tests key their template
// databases on it.
func SchemaDigest() string {
	h := sha256.New()
	names, _ := fs.Glob(migrationFS, "migrations/*.sql")
	sort.Strings(names)
	for _, n := range names {
		body, _ := migrationFS.ReadFile(n)
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(body))
		h.Write(body)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}
