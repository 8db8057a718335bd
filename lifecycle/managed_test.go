package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/internal/testca"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/lifecycle/managed"
	"github.com/sigil-ca/sigil/store"
)

const testBaseURL = "http://ca.test:8080"

// testAuthority is a freshly initialized CA on st.
type testAuthority struct {
	*ca.Authority
	st   *store.SQLite
	keys *keystore.Keystore
}

func newTestAuthority(t testing.TB, clk clockwork.Clock, st *store.SQLite, profiles map[string]ca.Profile) *testAuthority {
	t.Helper()
	tc := testca.New(t, testca.Options{Name: "Lifecycle Test CA", Clock: clk, Store: st})
	res := tc.Init
	ta := &testAuthority{st: st, keys: res.Keystore}
	ta.Authority = ta.with(t, clk, profiles)
	return ta
}

// with is another Authority over the same store and keys (as after a
// restart with another configuration).
func (ta *testAuthority) with(t testing.TB, clk clockwork.Clock, profiles map[string]ca.Profile) *ca.Authority {
	t.Helper()
	if profiles == nil {
		profiles = ca.DefaultProfiles()
	}
	a, err := ca.New(context.Background(), ca.Config{Profiles: profiles, BaseURL: testBaseURL, Clock: clk,
		Logger: slog.New(slog.DiscardHandler)}, ta.st, ta.keys)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// service is the managed-certificate service over a.
func (ta *testAuthority) service(t testing.TB, clk clockwork.Clock, a *ca.Authority) *managed.Service {
	t.Helper()
	svc, err := managed.New(managed.Config{Clock: clk, Logger: slog.New(slog.DiscardHandler)}, a.HeldKeys(), ta.st)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func (ta *testAuthority) managed(t testing.TB, name string) store.ManagedRecord {
	t.Helper()
	m, err := ta.st.Managed(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func managedTask(t testing.TB, a ManagedCerts) Task {
	t.Helper()
	task, err := ManagedRenewTask(ManagedRenewConfig{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, a)
	if err != nil {
		t.Fatal(err)
	}
	return task
}

// waitRun waits until the run of job that started at started is finished.
func waitRun(t *testing.T, st *store.SQLite, job string, started time.Time) store.JobRun {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		runs, err := st.JobRuns(context.Background(), job, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) == 1 && runs[0].Started.Equal(started) && runs[0].Result != store.JobRunning {
			return runs[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no finished run of %s started at %v (latest %+v)", job, started, runs)
		}
		time.Sleep(time.Millisecond) // another goroutine's commit, not the fake clock
	}
}

// trigger runs job now, waiting for the previous run's goroutine to let
// go of it.
func trigger(t *testing.T, s *Scheduler, job string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := s.Trigger(job, "token:test")
		if err == nil {
			return
		}
		if !errors.Is(err, ErrRunning) || time.Now().After(deadline) {
			t.Fatalf("trigger %s: %v", job, err)
		}
		time.Sleep(time.Millisecond) // another goroutine returning, not the fake clock
	}
}

// TestManagedRenewsAtRenewalPoint is issue 7's acceptance test: under the
// scheduler, on a fake clock, a managed certificate renews exactly at its
// renewal point (the run just before it renews nothing, the run at it
// renews) and rotates its key per policy.
func TestManagedRenewsAtRenewalPoint(t *testing.T) {
	for _, tc := range []struct {
		policy string
		rotate []bool // per renewal
	}{
		{"always", []bool{true, true, true}},
		{"never", []bool{false, false, false}},
		{"every:2", []bool{false, true, false}},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			clk := clockwork.NewFakeClockAt(testStart)
			st, _ := openStore(t, clk)
			ta := newTestAuthority(t, clk, st, nil)
			// Validity 121m, renew-at 1/2: with the one-minute backdate the
			// lifetime is 122m from T-1m, so the renewal point is T+60m, on
			// the 5-minute schedule's 12th tick. The next version (issued
			// at T+60m) renews at T+120m, and so on.
			svc := ta.service(t, clk, ta.Authority)
			m, err := svc.Create(context.Background(), managed.Spec{Name: "web", SANs: []string{"web.example.com"},
				Profile: "tls-server", Validity: 121 * time.Minute, RenewAt: "1/2", RotateKey: tc.policy, Actor: "token:admin"})
			if err != nil {
				t.Fatal(err)
			}
			if want := testStart.Add(time.Hour); !m.RenewDue.Equal(want) {
				t.Fatalf("renewal point %v, want %v", m.RenewDue, want)
			}
			// The job runs through the scheduler, triggered every five
			// minutes of the fake clock (its own schedule, daily, does not
			// fire within the test, so no tick races a trigger).
			seed(t, st, ManagedRenewJob, testStart, store.JobOK) // not due at start
			s := newScheduler(t, clk, st, Job{Name: ManagedRenewJob, Schedule: MustSchedule("every 24h"),
				Task: managedTask(t, svc), ChangesState: true})
			if err := s.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer s.Stop()
			version, key := 1, m.KeyID
			for tick := 1; tick <= 12*len(tc.rotate); tick++ {
				clk.Advance(5 * time.Minute)
				trigger(t, s, ManagedRenewJob)
				run := waitRun(t, st, ManagedRenewJob, testStart.Add(time.Duration(tick)*5*time.Minute))
				if run.Result != store.JobOK {
					t.Fatalf("tick %d: run %+v", tick, run)
				}
				cur := ta.managed(t, "web")
				// (Items also count replaced keys destroyed once expired.)
				if tick%12 != 0 {
					if cur.Version != version {
						t.Fatalf("tick %d (%v before the renewal point): version %d; want no renewal",
							tick, time.Duration(12-tick%12)*5*time.Minute, cur.Version)
					}
					continue
				}
				renewal := tick / 12
				if cur.Version != version+1 || run.Items < 1 {
					t.Fatalf("tick %d (the renewal point): version %d, %d items; want version %d", tick, cur.Version, run.Items, version+1)
				}
				if rotated := cur.KeyID != key; rotated != tc.rotate[renewal-1] {
					t.Errorf("renewal %d: rotated %v, want %v (policy %s)", renewal, rotated, tc.rotate[renewal-1], tc.policy)
				}
				if want := testStart.Add(time.Duration(renewal+1) * time.Hour); !cur.RenewDue.Equal(want) {
					t.Errorf("renewal %d: next renewal point %v, want %v", renewal, cur.RenewDue, want)
				}
				version, key = cur.Version, cur.KeyID
			}
			vs, err := st.ManagedVersions(context.Background(), "web")
			if err != nil || len(vs) != len(tc.rotate)+1 {
				t.Errorf("%d versions kept, want %d (%v)", len(vs), len(tc.rotate)+1, err)
			}
		})
	}
}

// TestManagedRenewTask: one run renews every due certificate, revokes the
// superseded versions whose overlap is zero, and counts failures without
// stopping; a failure is recorded on its certificate and the next run
// tries again.
func TestManagedRenewTask(t *testing.T) {
	clk := clockwork.NewFakeClockAt(testStart)
	st, _ := openStore(t, clk)
	profiles := ca.DefaultProfiles()
	profiles["temporary"] = profiles["tls-server"]
	ta := newTestAuthority(t, clk, st, profiles)
	ctx := context.Background()
	zero := time.Duration(0)
	svc := ta.service(t, clk, ta.Authority)
	for i := range 40 {
		s := managed.Spec{Name: fmt.Sprintf("svc-%02d", i), SANs: []string{fmt.Sprintf("svc%d.example.com", i)},
			Profile: "tls-server", RotateKey: "always", Actor: "token:admin"}
		switch {
		case i < 3:
			s.Profile = "temporary" // removed from the configuration below: its renewal fails
		case i < 10:
			s.RevokePreviousAfter = &zero
		}
		if _, err := svc.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	a := ta.with(t, clk, nil) // "temporary" is gone
	task := managedTask(t, ta.service(t, clk, a))
	if res, err := task(ctx); err != nil || res.Items != 0 {
		t.Fatalf("nothing due: %+v, %v", res, err)
	}
	clk.Advance(61 * 24 * time.Hour) // past two thirds of 90 days
	res, err := task(ctx)
	if err == nil || !strings.Contains(err.Error(), "3 managed certificate operations failed (3 renewals of 40)") ||
		!strings.Contains(err.Error(), `unknown profile "temporary"`) {
		t.Errorf("run error %v", err)
	}
	if res.Items != 37+7 { // 37 renewals, 7 revocations
		t.Errorf("items %d, want 44", res.Items)
	}
	for i := range 40 {
		m := ta.managed(t, fmt.Sprintf("svc-%02d", i))
		switch {
		case i < 3:
			if m.Version != 1 || !strings.Contains(m.LastError, "unknown profile") {
				t.Errorf("%s: version %d, last error %q", m.Name, m.Version, m.LastError)
			}
		default:
			if m.Version != 2 || m.LastError != "" {
				t.Errorf("%s: version %d, last error %q", m.Name, m.Version, m.LastError)
			}
			vs, _ := st.ManagedVersions(ctx, m.Name)
			revoked := !vs[1].RevokedAt.IsZero()
			if revoked != (i < 10) || (revoked && vs[1].RevokeReason != ca.ReasonSuperseded) {
				t.Errorf("%s: previous version revoked %v (reason %d)", m.Name, revoked, vs[1].RevokeReason)
			}
		}
	}
	evs, _, _ := st.AuditEvents(ctx, store.AuditFilter{Action: "managed.renew.failed", Limit: 100})
	if len(evs) != 3 || evs[0].Actor != "system:managed-renew" {
		t.Errorf("managed.renew.failed events %+v", evs)
	}
	// The next run retries only what failed; the keys replaced at renewal
	// are destroyed once their certificates have expired.
	res, err = task(ctx)
	if err == nil || res.Items != 0 {
		t.Errorf("retry: %+v, %v", res, err)
	}
	clk.Advance(30 * 24 * time.Hour)
	if res, err = task(ctx); res.Items != 37 || err == nil {
		t.Errorf("after expiry: %+v, %v; want the 37 replaced keys destroyed", res, err)
	}
	keys, _ := st.Keys(ctx)
	destroyed := 0
	for _, k := range keys {
		if k.Purpose == managed.KeyPurpose && k.State == store.KeyDestroyed {
			destroyed++
		}
	}
	if destroyed != 37 {
		t.Errorf("%d managed keys destroyed, want 37", destroyed)
	}
}
