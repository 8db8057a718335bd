package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jonboulle/clockwork"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/sigil-ca/sigil/ca/audit"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Config configures a SQLite store.
type Config struct {
	// Path is the database file; it is created if missing.
	Path string
	// ReadConns bounds concurrent readers (default 4).
	ReadConns int
	// MaxBatch bounds how many WithTx calls share one commit (default 256).
	MaxBatch int
	// OnCommit, if set, observes every commit: its latency and batch size.
	OnCommit func(latency time.Duration, batch int)
	// Clock stamps migrations, tree heads and checkpoints, and measures
	// commits. Required: callers pass the clock their components share.
	Clock clockwork.Clock
	// Logger receives failures nobody waits for, such as a checkpoint that
	// could not be signed (default: discard).
	Logger *slog.Logger

	// withoutLog skips the transparency log append; only tests set it
	// (BenchmarkLogAppend, and OpenWithoutLog for
	// BenchmarkIssuanceLogOverhead), to measure what the append costs.
	withoutLog bool
}

// SQLite is the embedded Store backend.
type SQLite struct {
	write *sql.DB // exactly one connection, owned by the writer goroutine
	read  *sql.DB
	gc    *groupCommit
	// drive is the candidate count up to which a name or ACME account
	// filter drives a certificate query (driveLimit; tests lower it).
	drive int64
	// noRollup counts every summary from the certificate indexes, not
	// the rollup tables (tests compare the two).
	noRollup bool

	closeOnce sync.Once
	closeErr  error
}

var _ Store = (*SQLite)(nil)

func dsn(path string, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	// FULL: a commit is on disk (WAL fsynced) before WithTx returns.
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(1)")
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	} else {
		q.Set("_txlock", "immediate")
		// Every record is written in a savepoint, whose rollback journal
		// is a temp file by default: one write per page touched. In
		// memory it holds only the pages of the current savepoint.
		q.Add("_pragma", "temp_store(MEMORY)")
	}
	return "file:" + uriPath(path) + "?" + q.Encode()
}

// uriPath escapes path for a "file:" URI, which SQLite parses: without it
// %XX would be decoded and ? or # would end the path, opening another file.
func uriPath(path string) string {
	return strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
}

// Open opens (creating if needed) the database at cfg.Path and applies
// pending migrations.
func Open(ctx context.Context, cfg Config) (*SQLite, error) {
	if cfg.Path == "" {
		return nil, errors.New("store: empty database path")
	}
	if cfg.ReadConns <= 0 {
		cfg.ReadConns = 4
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 256
	}
	if cfg.Clock == nil {
		// No default: a store on the wall clock beside an authority on
		// another clock judges its own records stale or young wrongly.
		return nil, errors.New("store: config has no clock")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	w, err := sql.Open("sqlite", dsn(cfg.Path, false))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", cfg.Path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	w.SetConnMaxLifetime(0)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("open %s: %w", cfg.Path, err)
	}
	from, err := migrate(ctx, w, cfg.Clock.Now())
	if err != nil {
		w.Close()
		return nil, err
	}
	// Only a database migrated across the key-hash column can have rows
	// without one; checking on every open would scan the whole table.
	if from > 0 && from < spkiHashVersion {
		if err := backfillSPKI(ctx, w); err != nil {
			w.Close()
			return nil, err
		}
	}
	if from > 0 && from < historyVersion {
		if err := backfillNames(ctx, w); err != nil {
			w.Close()
			return nil, err
		}
	}
	if err := catchUpLog(ctx, w); err != nil {
		w.Close()
		return nil, err
	}
	r, err := sql.Open("sqlite", dsn(cfg.Path, true))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open %s: %w", cfg.Path, err)
	}
	r.SetMaxOpenConns(cfg.ReadConns)
	r.SetMaxIdleConns(cfg.ReadConns)
	s := &SQLite{write: w, read: r, drive: driveLimit}
	head, err := s.AuditHead(ctx)
	if err != nil {
		s.write.Close()
		s.read.Close()
		return nil, err
	}
	lastCP, err := s.lastCheckpointSeq(ctx)
	if err != nil {
		s.write.Close()
		s.read.Close()
		return nil, err
	}
	if s.gc, err = newGroupCommit(ctx, w, cfg, head, lastCP); err != nil {
		s.write.Close()
		s.read.Close()
		return nil, err
	}
	return s, nil
}

// SetCheckpointer installs the audit checkpoint signer. Until it is set no
// checkpoints are written.
func (s *SQLite) SetCheckpointer(cp Checkpointer) {
	if s.gc != nil {
		s.gc.setCheckpointer(cp)
	}
}

// Close stops the writer after pending transactions and closes the database.
func (s *SQLite) Close() error {
	s.closeOnce.Do(func() {
		if s.gc == nil { // read-only
			s.closeErr = s.read.Close()
			return
		}
		s.gc.stop()
		// Fold the WAL into the main file so a copied database is complete.
		_, _ = s.write.Exec("PRAGMA wal_checkpoint(TRUNCATE)")
		s.closeErr = errors.Join(s.read.Close(), s.write.Close())
	})
	return s.closeErr
}

// IntegrityCheck runs PRAGMA integrity_check and returns its verdict ("ok" when sound).
func (s *SQLite) IntegrityCheck(ctx context.Context) (string, error) {
	var out []string
	rows, err := s.read.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return "", fmt.Errorf("integrity check: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return "", fmt.Errorf("integrity check: %w", err)
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n"), rows.Err()
}

// migrate applies the embedded migrations the database lacks, each in its
// own transaction, and returns the version it was at before (0: new).
func migrate(ctx context.Context, db *sql.DB, now time.Time) (int, error) {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, applied BIGINT NOT NULL)`); err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	var current int
	if err := db.QueryRowContext(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&current); err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	sort.Strings(names)
	for _, name := range names {
		base := strings.TrimPrefix(name, "migrations/")
		v, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return 0, fmt.Errorf("migrate: bad migration name %q", name)
		}
		if v <= current {
			continue
		}
		body, err := migrationFS.ReadFile(name)
		if err != nil {
			return 0, fmt.Errorf("migrate: %w", err)
		}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return 0, fmt.Errorf("migrate %s: %w", base, err)
		}
		if _, err := tx.ExecContext(ctx, string(body)); err != nil {
			return 0, errors.Join(fmt.Errorf("migrate %s: %w", base, err), tx.Rollback())
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, applied) VALUES (?, ?)", v, now.UnixNano()); err != nil {
			return 0, errors.Join(fmt.Errorf("migrate %s: %w", base, err), tx.Rollback())
		}
		if err := tx.Commit(); err != nil {
			return 0, fmt.Errorf("migrate %s: %w", base, err)
		}
	}
	return current, nil
}

// isUnique reports whether err is a uniqueness or primary-key violation.
// isFull reports whether err is SQLite's "database or disk is full"
// (SQLITE_FULL, or a write that failed with ENOSPC).
func isFull(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_FULL {
		return true
	}
	return errors.Is(err, syscall.ENOSPC)
}

func isUnique(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		c := se.Code()
		return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

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

func (s *SQLite) lastCheckpointSeq(ctx context.Context) (int64, error) {
	var seq int64
	err := s.read.QueryRowContext(ctx, "SELECT COALESCE(MAX(seq), 0) FROM audit_checkpoints").Scan(&seq)
	if err != nil {
		return 0, fmt.Errorf("last checkpoint: %w", err)
	}
	return seq, nil
}

// AuditHead returns the last committed event's position (Seq 0 when empty).
func (s *SQLite) AuditHead(ctx context.Context) (audit.Head, error) {
	var h audit.Head
	err := s.read.QueryRowContext(ctx, "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1").Scan(&h.Seq, &h.Hash)
	if errors.Is(err, sql.ErrNoRows) {
		return audit.Head{Seq: 0, Hash: audit.GenesisHash()}, nil
	}
	if err != nil {
		return audit.Head{}, fmt.Errorf("audit head: %w", err)
	}
	return h, nil
}

// OpenReadOnly opens an existing database for reading only: no migrations,
// no writer. WithTx and Checkpoint fail. Offline verification uses it so
// that checking a database never changes it.
func OpenReadOnly(ctx context.Context, path string) (*SQLite, error) {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "query_only(1)")
	q.Set("mode", "ro")
	r, err := sql.Open("sqlite", "file:"+uriPath(path)+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	var n int
	if err := r.QueryRowContext(ctx, "SELECT COUNT(*) FROM schema_migrations").Scan(&n); err != nil {
		r.Close()
		return nil, fmt.Errorf("open %s: not a Sigil database: %w", path, err)
	}
	return &SQLite{read: r, drive: driveLimit}, nil
}
