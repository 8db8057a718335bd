package revocation

import (
	"context"
	"crypto"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/sigil-ca/sigil/store"
)

// fullStore is a store whose disk is full: every write fails with
// store.ErrFull, reads work.
type fullStore struct {
	*store.SQLite
	writes int
}

func (f *fullStore) WithTx(context.Context, func(store.Tx) error) error {
	f.writes++
	return fmt.Errorf("commit: %w", store.ErrFull)
}

// TestOCSPStartOnFullDisk: with every response due and no room to store
// one, Start still succeeds and serves what it signed from memory, trying
// one bounded batch per issuer, not every batch (issue 15, item 8).
func TestOCSPStartOnFullDisk(t *testing.T) {
	e := newEnv(t)
	for _, cn := range []string{"a.example.com", "b.example.com", "c.example.com"} {
		e.issue(cn)
	}
	leaf := e.issue("d.example.com")
	fs := &fullStore{SQLite: e.st}
	r, err := NewResponder(OCSPConfig{Clock: e.clk, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, e.auth, fs)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatalf("Start on a full disk: %v", err)
	}
	defer r.Close()
	inter := e.auth.Intermediate().Cert
	resp := parse(t, post(t, r.Handler(), request(t, leaf, inter, crypto.SHA256)), leaf, inter)
	if resp.Status != ocsp.Good {
		t.Errorf("status %d, want good", resp.Status)
	}
	if got := counterValue(t, r.metrics.persistFull); got == 0 {
		t.Error("no response counted as not stored")
	}
	// One attempt per issuer (here one), then the refresh stops writing.
	if fs.writes > len(r.idx.Load().order) {
		t.Errorf("%d store writes on a full disk, want at most one per issuer", fs.writes)
	}
	// The next refresh tries again, once.
	e.clk.Advance(time.Hour)
	before := fs.writes
	if _, err := r.Refresh(context.Background()); err != nil {
		t.Fatalf("Refresh on a full disk: %v", err)
	}
	if fs.writes-before > len(r.idx.Load().order) {
		t.Errorf("%d store writes in one refresh on a full disk", fs.writes-before)
	}
}
