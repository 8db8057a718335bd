package pgelect_test

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sigil-ca/sigil/lifecycle/pgelect"
)

// serverDSN is the PostgreSQL server the tests use, as store/postgres's
// tests do: SIGIL_TEST_PG_DSN, or the postgres role on 127.0.0.1.
func serverDSN() string {
	if dsn := os.Getenv("SIGIL_TEST_PG_DSN"); dsn != "" {
		return dsn
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// newPool opens a pool on the test server, one per simulated node; the
// test skips when no server answers, unless CI or SIGIL_REQUIRE_PG=1.
func newPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, serverDSN())
	if err == nil {
		err = pool.Ping(ctx)
	}
	if err != nil {
		if os.Getenv("SIGIL_REQUIRE_PG") == "1" || os.Getenv("CI") != "" {
			t.Fatalf("PostgreSQL is required (CI or SIGIL_REQUIRE_PG=1) but does not answer: %v", err)
		}
		t.Skipf("NO POSTGRESQL SERVER: %v; set SIGIL_TEST_PG_DSN to run the PostgreSQL tests", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// electionName is unique per test run: tests share the server.
func electionName(t *testing.T) string {
	return t.Name() + "/" + rand.Text()
}

// killSession ends, from outside, the database session through which e
// leads, as PostgreSQL sees a node that died or lost its network.
func killSession(t *testing.T, admin *pgxpool.Pool, e *pgelect.Elector) {
	t.Helper()
	pid := e.SessionPID()
	if pid == 0 {
		t.Fatal("the elector holds no session")
	}
	var ok bool
	if err := admin.QueryRow(context.Background(), "SELECT pg_terminate_backend($1)", pid).Scan(&ok); err != nil || !ok {
		t.Fatalf("pg_terminate_backend(%d): %v %v", pid, ok, err)
	}
	// The lock is free once the backend is gone.
	for range 500 {
		var alive bool
		if err := admin.QueryRow(context.Background(), "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)", pid).Scan(&alive); err != nil {
			t.Fatal(err)
		}
		if !alive {
			return
		}
		time.Sleep(10 * time.Millisecond) // the server's backend exiting, not a clock
	}
	t.Fatalf("backend %d still alive", pid)
}

func TestOneLeader(t *testing.T) {
	ctx := context.Background()
	name := electionName(t)
	a, b := pgelect.New(newPool(t), name), pgelect.New(newPool(t), name)
	defer a.Close()
	defer b.Close()
	other := pgelect.New(newPool(t), name+"/other") // another election is independent
	defer other.Close()

	if err := a.IsLeader(ctx); err != nil {
		t.Fatalf("first node: %v, want it to lead", err)
	}
	if err := a.IsLeader(ctx); err != nil {
		t.Fatalf("first node asked again: %v", err)
	}
	if err := b.IsLeader(ctx); !errors.Is(err, pgelect.ErrNotLeader) {
		t.Fatalf("second node: %v, want ErrNotLeader", err)
	}
	if err := other.IsLeader(ctx); err != nil {
		t.Fatalf("another election's node: %v", err)
	}

	// A graceful hand-over.
	a.Close()
	if err := b.IsLeader(ctx); err != nil {
		t.Fatalf("second node after the first closed: %v", err)
	}
	if err := a.IsLeader(ctx); !errors.Is(err, pgelect.ErrNotLeader) {
		t.Fatalf("first node after closing: %v, want ErrNotLeader", err)
	}
}

// TestLeaderSessionDies: the leader's session ends without an unlock (the
// node was killed): the other node leads at its next ask, and the old
// leader, should it come back, learns it no longer leads.
func TestLeaderSessionDies(t *testing.T) {
	ctx := context.Background()
	name := electionName(t)
	admin := newPool(t)
	a, b := pgelect.New(newPool(t), name), pgelect.New(newPool(t), name)
	defer a.Close()
	defer b.Close()
	if err := a.IsLeader(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.IsLeader(ctx); !errors.Is(err, pgelect.ErrNotLeader) {
		t.Fatalf("second node: %v", err)
	}
	killSession(t, admin, a)
	if err := b.IsLeader(ctx); err != nil {
		t.Fatalf("second node after the leader's session died: %v, want it to lead", err)
	}
	if err := a.IsLeader(ctx); err == nil {
		t.Fatal("the old leader still thinks it leads")
	}
	if a.SessionPID() != 0 {
		t.Error("the old leader kept its dead session")
	}
}

// TestUnreachable: a node that cannot reach the database does not lead.
func TestUnreachable(t *testing.T) {
	cfg, err := pgxpool.ParseConfig("postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	e := pgelect.New(pool, electionName(t))
	if err := e.IsLeader(context.Background()); err == nil || errors.Is(err, pgelect.ErrNotLeader) {
		t.Fatalf("IsLeader without a database: %v, want a connection error", err)
	}
}
