// Package testca builds the certificate authority that tests run against:
// a real SQLite file in the test's temporary directory, a hierarchy made by
// ca.Init with cheap key-derivation parameters, and an authority over it,
// all on one fake clock (internal/testclock unless the test gives its own).
// It replaces the setups each package's tests used to write by hand.
//
// Only tests import it. Imports: ca, ca/keystore, store, internal/testclock.
package testca

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/internal/testclock"
	"github.com/sigil-ca/sigil/store"
)

// BaseURL is the external base URL test authorities put in AIA and CRL
// distribution points.
const BaseURL = "http://ca.test:8080"

// Passphrase unlocks every test CA's keys; it protects nothing real.
const Passphrase = "test-only passphrase"

// Options change the defaults of New; the zero value is a P-256 hierarchy
// named "Sigil Test CA" with ca.DefaultProfiles on a testclock clock.
type Options struct {
	Name                  string
	RootAlgorithm         keystore.Algorithm
	IntermediateAlgorithm keystore.Algorithm
	Clock                 clockwork.Clock
	// Path of the database; default sigil.db in a fresh t.TempDir()
	// (empty in CA.Path when Store is given).
	Path string
	// Store, if set, is an open store to initialize instead of opening
	// one at Path; its caller closes it.
	Store *store.SQLite
	// Init adjusts the hierarchy's parameters before ca.Init.
	Init func(*ca.InitConfig)
	// Config adjusts the authority's configuration before ca.New.
	Config func(*ca.Config)
}

// CA is a test hierarchy and an authority over it.
type CA struct {
	Store     *store.SQLite
	Init      *ca.InitResult
	Authority *ca.Authority
	Clock     clockwork.Clock
	Path      string
	Logger    *slog.Logger
}

// New creates a CA for tb; its store closes when tb ends.
func New(tb testing.TB, opts Options) *CA {
	tb.Helper()
	ctx := context.Background()
	if opts.Clock == nil {
		opts.Clock = testclock.New()
	}
	if opts.Path == "" && opts.Store == nil {
		opts.Path = filepath.Join(tb.TempDir(), "sigil.db")
	}
	if opts.Name == "" {
		opts.Name = "Sigil Test CA"
	}
	if opts.RootAlgorithm == "" {
		opts.RootAlgorithm = keystore.ECDSAP256
	}
	if opts.IntermediateAlgorithm == "" {
		opts.IntermediateAlgorithm = keystore.ECDSAP256
	}
	st := opts.Store
	if st == nil {
		var err error
		if st, err = store.Open(ctx, store.Config{Path: opts.Path, Clock: opts.Clock}); err != nil {
			tb.Fatalf("testca: open store: %v", err)
		}
		tb.Cleanup(func() { st.Close() })
	}
	kdf, err := keystore.FastKDFParams(rand.Reader)
	if err != nil {
		tb.Fatalf("testca: kdf parameters: %v", err)
	}
	ic := ca.InitConfig{Name: opts.Name, RootAlgorithm: opts.RootAlgorithm, IntermediateAlgorithm: opts.IntermediateAlgorithm,
		BaseURL: BaseURL, Passphrase: []byte(Passphrase), KDF: kdf, Clock: opts.Clock}
	if opts.Init != nil {
		opts.Init(&ic)
	}
	res, err := ca.Init(ctx, st, ic)
	if err != nil {
		tb.Fatalf("testca: init: %v", err)
	}
	st.SetCheckpointer(res.Checkpointer)
	c := &CA{Store: st, Init: res, Clock: opts.Clock, Path: opts.Path,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	c.Authority = c.NewAuthority(tb, opts.Config)
	return c
}

// NewAuthority is another authority over c's store and keys (a restarted
// server, or one configured differently), on c's clock unless configure
// sets another.
func (c *CA) NewAuthority(tb testing.TB, configure func(*ca.Config)) *ca.Authority {
	tb.Helper()
	cfg := ca.Config{Profiles: ca.DefaultProfiles(), BaseURL: BaseURL, Clock: c.Clock, Logger: c.Logger}
	if configure != nil {
		configure(&cfg)
	}
	a, err := ca.New(context.Background(), cfg, c.Store, c.Init.Keystore)
	if err != nil {
		tb.Fatalf("testca: authority: %v", err)
	}
	return a
}
