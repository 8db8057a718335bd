package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/internal/testclock"
	"github.com/sigil-ca/sigil/store"
	"github.com/sigil-ca/sigil/store/postgres"
	"github.com/sigil-ca/sigil/store/postgres/pgtest"
)

// TestChainLockOnlyForAppends holds the chain lock from another session
// (as a node in the middle of an append does) and checks that writes that
// append nothing commit meanwhile; that in a batch whose earlier writes
// hold row locks, an append that finds the lock taken is put off to a
// later batch rather than waited for (which could deadlock against that
// node), its batch-mates committing; and that an append waits for the lock
// and goes through once it is released.
func TestChainLockOnlyForAppends(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	clk := testclock.New()
	s, err := postgres.Open(ctx, postgres.Config{DSN: dsn, Clock: clk, MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	other, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	if _, err := other.Exec(ctx, "SELECT pg_advisory_lock($1)", postgres.ChainLock); err != nil {
		t.Fatal(err)
	}
	nonce := func(n string) func(store.Tx) error {
		return func(tx store.Tx) error { return tx.UseNonce(n, clk.Now().Add(time.Hour)) }
	}
	appendEvent := func(tx store.Tx) error {
		_, err := tx.AppendAudit(audit.Event{Time: clk.Now(), Actor: "test", Action: "test.event", Target: "x"})
		return err
	}

	errs, putOff := postgres.CommitBatch(s, nonce("n1"), appendEvent)
	if errs[0] != nil || len(putOff) != 1 || putOff[0] != 1 {
		t.Fatalf("batch [nonce, append] with the chain lock taken: errors %v, put off %v; want the nonce committed and the append put off", errs, putOff)
	}
	if err := s.WithTx(ctx, nonce("n1")); !errors.Is(err, store.ErrDuplicate) {
		t.Errorf("the nonce of the batch: using it again = %v, want ErrDuplicate (committed)", err)
	}
	if err := s.WithTx(ctx, nonce("n2")); err != nil {
		t.Errorf("a nonce while another session holds the chain lock: %v", err)
	}

	done := make(chan error, 1)
	go func() { done <- s.WithTx(ctx, appendEvent) }()
	// The append waits for the lock: its session shows in pg_locks.
	for waiting := false; !waiting; {
		if err := other.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks
			WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			t.Fatalf("an append committed while another session held the chain lock (%v)", err)
		default:
		}
		time.Sleep(10 * time.Millisecond) // polling the server's lock table, not timing behaviour
	}
	if _, err := other.Exec(ctx, "SELECT pg_advisory_unlock($1)", postgres.ChainLock); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("the append after the lock was released: %v", err)
	}
	if h, err := s.AuditHead(ctx); err != nil || h.Seq != 1 {
		t.Errorf("AuditHead = %d, %v; want 1", h.Seq, err)
	}
}
