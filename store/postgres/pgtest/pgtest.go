// Package pgtest gives tests a PostgreSQL database of their own on the
// server SIGIL_TEST_PG_DSN names (default: the postgres role over TCP on
// 127.0.0.1:5432, trust authentication). Without a server the test is
// skipped, saying why, unless CI or SIGIL_REQUIRE_PG=1 is set: then it fails.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/store/postgres"
)

// DefaultDSN is the server tests use when SIGIL_TEST_PG_DSN is unset.
const DefaultDSN = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// ServerDSN returns the DSN of the server's maintenance database.
func ServerDSN() string {
	if dsn := os.Getenv("SIGIL_TEST_PG_DSN"); dsn != "" {
		return dsn
	}
	return DefaultDSN
}

// Required reports whether a missing server fails tests instead of
// skipping them.
func Required() bool {
	return os.Getenv("SIGIL_REQUIRE_PG") == "1" || os.Getenv("CI") != ""
}

// NewDatabase returns the DSN of a database that is t's alone until t
// ends, holding the current schema and no rows. Databases are slots reused
// across tests and runs: CREATE DATABASE copies and logs every page of its
// template, which made it most of a contract test's time, while emptying
// a used one (TRUNCATE, identities restarted) costs a fraction of that. A
// slot is claimed by a session advisory lock held until t ends and emptied
// when claimed, so a test killed midway leaves nothing behind for the next.
// The store under test must be closed before t ends (register its Close
// with t.Cleanup after calling NewDatabase).
func NewDatabase(t testing.TB) string {
	t.Helper()
	admin := connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tmpl, err := template(ctx, admin, ServerDSN())
	if err != nil {
		t.Fatalf("template database: %v", err)
	}
	for slot := 0; ; slot++ {
		name := fmt.Sprintf("%s_%d", strings.Replace(tmpl, "_template_", "_test_", 1), slot)
		var claimed bool
		if err := admin.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", lockKey(name)).Scan(&claimed); err != nil {
			t.Fatalf("claim %s: %v", name, err)
		}
		if !claimed {
			continue
		}
		// The session lock goes with the connection, at the end of t.
		t.Cleanup(func() { admin.Close(context.Background()) })
		dsn, err := withDatabase(ServerDSN(), name)
		if err != nil {
			t.Fatal(err)
		}
		var exists bool
		if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
			t.Fatalf("claim %s: %v", name, err)
		}
		if !exists {
			if _, err := admin.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE "+tmpl); err != nil {
				t.Fatalf("create database %s: %v", name, err)
			}
			return dsn
		}
		if err := empty(ctx, dsn); err != nil {
			t.Fatalf("empty database %s: %v", name, err)
		}
		return dsn
	}
}

// connect opens a connection to the server's maintenance database, or
// skips (fails, when Required) t.
func connect(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, ServerDSN())
	if err != nil {
		if Required() {
			t.Fatalf("PostgreSQL at SIGIL_TEST_PG_DSN (or %s) is required (CI or SIGIL_REQUIRE_PG=1) but does not answer: %v", DefaultDSN, err)
		}
		t.Skipf("NO POSTGRESQL SERVER: %v; set SIGIL_TEST_PG_DSN to run the PostgreSQL tests", err)
	}
	return admin
}

// empty deletes every row of the database dsn names but the migration
// record, and restarts its identity sequences.
func empty(ctx context.Context, dsn string) error {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	var tables string
	if err := c.QueryRow(ctx, `SELECT string_agg(format('%I', tablename), ', ') FROM pg_tables
		WHERE schemaname = 'public' AND tablename != 'schema_migrations'`).Scan(&tables); err != nil {
		return err
	}
	_, err = c.Exec(ctx, "TRUNCATE "+tables+" RESTART IDENTITY")
	return err
}

func lockKey(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return int64(h.Sum64())
}

func withDatabase(server, name string) (string, error) {
	u, err := url.Parse(server)
	if err != nil || u.Scheme == "" {
		return "", errors.New("SIGIL_TEST_PG_DSN must be a postgres:// URL")
	}
	u.Path = "/" + name
	return u.String(), nil
}

// templateLock serialises template creation across test processes.
const templateLock = 0x5369_6769_6c7f

// template returns the name of the database migrated to the current
// schema, creating it if no test process has yet. It is kept across runs;
// the templates and slots of other schemas are dropped when it is made.
func template(ctx context.Context, admin *pgx.Conn, server string) (name string, err error) {
	digest := postgres.SchemaDigest()
	name = "sigil_template_" + digest
	if _, err := admin.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(templateLock)); err != nil {
		return "", err
	}
	defer func() {
		_, unlockErr := admin.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", int64(templateLock))
		err = errors.Join(err, unlockErr)
	}()
	var exists bool
	if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return "", err
	}
	if exists {
		return name, nil
	}
	if err := dropStale(ctx, admin, digest); err != nil {
		return "", err
	}
	// Built under another name and renamed, so that a half-made template
	// (a test process killed meanwhile) is never used.
	building := name + "_building"
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+building+" WITH (FORCE)"); err != nil {
		return "", err
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+building); err != nil {
		return "", err
	}
	dsn, err := withDatabase(server, building)
	if err != nil {
		return "", err
	}
	s, err := postgres.Open(ctx, postgres.Config{DSN: dsn, Clock: clockwork.NewFakeClockAt(time.Unix(0, 1).UTC()), MaxConns: 1})
	if err != nil {
		return "", fmt.Errorf("migrate %s: %w", building, err)
	}
	if err := s.Close(); err != nil {
		return "", err
	}
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+building+" RENAME TO "+name); err != nil {
		return "", err
	}
	return name, nil
}

// dropStale drops the templates and slots of other schemas that no test
// uses (DROP DATABASE without FORCE refuses one that is connected to).
func dropStale(ctx context.Context, admin *pgx.Conn, digest string) error {
	rows, err := admin.Query(ctx, `SELECT datname FROM pg_database
		WHERE (datname LIKE 'sigil\_template\_%' OR datname LIKE 'sigil\_test\_%') AND datname NOT LIKE '%' || $1 || '%'`, digest)
	if err != nil {
		return err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	for _, n := range names {
		var free bool
		if err := admin.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", lockKey(n)).Scan(&free); err != nil {
			return err
		}
		if !free {
			continue
		}
		_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+n) // in use: left for a later run
		if _, err := admin.Exec(ctx, "SELECT pg_advisory_unlock($1)", lockKey(n)); err != nil {
			return err
		}
	}
	return nil
}
