// Package pgtest gives tests a fresh PostgreSQL database of their own on
// the server SIGIL_TEST_PG_DSN names (default: the postgres role over TCP on
// 127.0.0.1:5432, trust authentication). Without a server the test is
// skipped, saying why, unless CI or SIGIL_REQUIRE_PG=1 is set: then it fails.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
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

// NewDatabase creates a database with a random name holding the current
// schema and no rows, drops it when t ends (closing its connections first),
// and returns its DSN. The schema is copied from a template database
// migrated once per schema (see postgres.SchemaDigest), which is much
// faster than migrating every database.
func NewDatabase(t testing.TB) string {
	return newDatabase(t, true)
}

// NewEmptyDatabase is NewDatabase without the schema: the database is as
// CREATE DATABASE makes it.
func NewEmptyDatabase(t testing.TB) string {
	return newDatabase(t, false)
}

func newDatabase(t testing.TB, migrated bool) string {
	t.Helper()
	server := ServerDSN()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, server)
	if err != nil {
		if Required() {
			t.Fatalf("PostgreSQL at SIGIL_TEST_PG_DSN (or %s) is required (CI or SIGIL_REQUIRE_PG=1) but does not answer: %v", DefaultDSN, err)
		}
		t.Skipf("NO POSTGRESQL SERVER: %v; set SIGIL_TEST_PG_DSN to run the PostgreSQL tests", err)
	}
	defer admin.Close(context.Background())
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	name := "sigil_test_" + hex.EncodeToString(b[:])
	create := "CREATE DATABASE " + name
	if migrated {
		tmpl, err := template(ctx, admin, server)
		if err != nil {
			t.Fatalf("template database: %v", err)
		}
		create += " TEMPLATE " + tmpl
	}
	if _, err := admin.Exec(ctx, create); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, server)
		if err != nil {
			t.Errorf("drop database %s: %v", name, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	dsn, err := withDatabase(server, name)
	if err != nil {
		t.Fatal(err)
	}
	return dsn
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
// schema, creating it if no test process has yet. It is kept across runs.
func template(ctx context.Context, admin *pgx.Conn, server string) (name string, err error) {
	name = "sigil_template_" + postgres.SchemaDigest()
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
