package acme

import (
	"context"
	"crypto/rand"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/internal/testclock"
	"github.com/sigil-ca/sigil/store"
)

func TestNonces(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sigil.db")
	clk := testclock.New()
	st, err := store.Open(ctx, store.Config{Path: path, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	key, err := LoadNonceKey(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := LoadNonceKey(ctx, st); err != nil || string(again) != string(key) {
		t.Fatalf("second LoadNonceKey returned a different key (err %v)", err)
	}
	n, err := NewNonces(key, 15*time.Minute, clk, st)
	if err != nil {
		t.Fatal(err)
	}
	isBadNonce := func(t *testing.T, err error) {
		t.Helper()
		var p *Problem
		if !errors.As(err, &p) || p.Type != "urn:ietf:params:acme:error:badNonce" {
			t.Errorf("error %v, want a badNonce problem", err)
		}
	}

	good, _ := n.New()
	if err := n.Use(ctx, good); err != nil {
		t.Fatalf("fresh nonce refused: %v", err)
	}
	t.Run("replayed", func(t *testing.T) { isBadNonce(t, n.Use(ctx, good)) })
	t.Run("tampered", func(t *testing.T) {
		fresh, _ := n.New()
		b := []byte(fresh)
		if b[len(b)-1] == 'A' {
			b[len(b)-1] = 'B'
		} else {
			b[len(b)-1] = 'A'
		}
		isBadNonce(t, n.Use(ctx, string(b)))
	})
	t.Run("garbage", func(t *testing.T) { isBadNonce(t, n.Use(ctx, "not-a-nonce!")) })
	t.Run("other key", func(t *testing.T) {
		other := make([]byte, 32)
		_, _ = rand.Read(other)
		m, _ := NewNonces(other, 15*time.Minute, clk, st)
		foreign, _ := m.New()
		isBadNonce(t, n.Use(ctx, foreign))
	})

	stale, _ := n.New()
	clk.Advance(16 * time.Minute)
	isBadNonce(t, n.Use(ctx, stale))

	// A spent nonce stays spent across a restart.
	unspent, _ := n.New()
	if err := n.Use(ctx, unspent); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st2, err := store.Open(ctx, store.Config{Path: path, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	key2, err := LoadNonceKey(ctx, st2)
	if err != nil || string(key2) != string(key) {
		t.Fatalf("nonce key did not survive the restart (err %v)", err)
	}
	n2, _ := NewNonces(key2, 15*time.Minute, clk, st2)
	isBadNonce(t, n2.Use(ctx, unspent))
}
