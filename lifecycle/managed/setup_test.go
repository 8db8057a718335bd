package managed

import (
	"context"
	"crypto"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/internal/testca"
	"github.com/sigil-ca/sigil/internal/testclock"
	"github.com/sigil-ca/sigil/store"
)

// managedCA is a test authority and the managed-certificate service over it.
type managedCA struct {
	tca *testca.CA
	a   *ca.Authority
	svc *Service
	st  *store.SQLite
	clk *clockwork.FakeClock
}

// testProfiles are the default profiles and "restricted", which allows
// only DNS names under example.com.
func testProfiles(cfg *ca.Config) {
	profiles := ca.DefaultProfiles()
	restricted := profiles["tls-server"]
	restricted.Names = ca.NamePolicy{DNS: ca.NameRules{Allow: []string{"example.com"}}, Forbid: []string{"email", "ip", "uri"}}
	profiles["restricted"] = restricted
	cfg.Profiles = profiles
}

func newManagedCA(t *testing.T) *managedCA {
	t.Helper()
	clk := testclock.New()
	tca := testca.New(t, testca.Options{Clock: clk, Config: testProfiles})
	mc := &managedCA{tca: tca, a: tca.Authority, st: tca.Store, clk: clk}
	mc.svc = mc.service(t, mc.a)
	return mc
}

// service is the managed-certificate service over a.
func (mc *managedCA) service(t *testing.T, a *ca.Authority) *Service {
	t.Helper()
	svc, err := New(Config{Clock: mc.clk, Logger: slog.New(slog.DiscardHandler)}, a.HeldKeys(), mc.st)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// restart is a new authority and service on the same store and keys, as
// after a restart of the server.
func (mc *managedCA) restart(t *testing.T) (*ca.Authority, *Service) {
	t.Helper()
	a := mc.tca.NewAuthority(t, testProfiles)
	return a, mc.service(t, a)
}

// stored returns the certificate's record as the store has it.
func (mc *managedCA) stored(t *testing.T, serial string) store.CertRecord {
	t.Helper()
	rec, err := mc.st.Certificate(context.Background(), serial)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// eventsAfter returns the audit events appended after seq.
func (mc *managedCA) eventsAfter(t *testing.T, seq int64) []audit.Event {
	t.Helper()
	evs, _, err := mc.st.AuditEvents(context.Background(), store.AuditFilter{Cursor: seq, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func (mc *managedCA) head(t *testing.T) int64 {
	t.Helper()
	h, err := mc.st.AuditHead(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return h.Seq
}

// checkKind fails unless err is a *ca.Error of kind whose detail contains want.
func checkKind(t *testing.T, err error, kind ca.Kind, want string) {
	t.Helper()
	var e *ca.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %T %v, want *ca.Error %s", err, err, kind)
	}
	if e.Kind != kind || !errors.Is(err, kind) {
		t.Errorf("kind = %s, want %s (%v)", e.Kind, kind, err)
	}
	if !strings.Contains(e.Detail, want) {
		t.Errorf("detail = %q, want it to contain %q", e.Detail, want)
	}
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}
