package pgelect_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/internal/testclock"
	"github.com/sigil-ca/sigil/lifecycle"
	"github.com/sigil-ca/sigil/lifecycle/pgelect"
	"github.com/sigil-ca/sigil/store"
)

// node is one simulated sigil serve: a scheduler with its own elector
// (its own database session), over the store every node shares.
type node struct {
	name  string
	sched *lifecycle.Scheduler
	elect *pgelect.Elector
	reg   *prometheus.Registry
	runs  atomic.Int32
}

// skipped is how many of n's scheduled ticks it skipped as run already.
func (n *node) skipped(t *testing.T) float64 {
	t.Helper()
	mfs, err := n.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "sigil_job_runs_skipped_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

// TestClusterOneRunnerFailover: two nodes schedule the same hourly job on
// one database. Only the elected one runs it, once per tick; when the
// leader's session dies in the middle of a run, the other node takes over
// within one election poll, marks that run interrupted and runs the job
// again at once, then keeps the schedule, still once per tick.
func TestClusterOneRunnerFailover(t *testing.T) {
	clk := testclock.New()
	st, err := store.Open(context.Background(), store.Config{Path: filepath.Join(t.TempDir(), "sigil.db"), Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	admin := newPool(t)
	election := electionName(t)
	const poll = 10 * time.Second

	hold := make(chan struct{}) // a run on a held node blocks until closed
	var heldNode atomic.Pointer[node]
	newNode := func(name string) *node {
		n := &node{name: name, elect: pgelect.New(newPool(t), election), reg: prometheus.NewRegistry()}
		t.Cleanup(n.elect.Close)
		sched, err := lifecycle.New(lifecycle.Config{Clock: clk, Logger: slog.New(slog.DiscardHandler),
			Elector: n.elect, ElectionPoll: poll, Metrics: lifecycle.NewMetrics(n.reg)}, st)
		if err != nil {
			t.Fatal(err)
		}
		err = sched.Add(lifecycle.Job{Name: "tick", Schedule: lifecycle.Schedule{Every: time.Hour},
			Task: func(ctx context.Context) (lifecycle.Result, error) {
				n.runs.Add(1)
				if heldNode.Load() == n {
					<-hold
				}
				return lifecycle.Result{Items: 1}, nil
			}})
		if err != nil {
			t.Fatal(err)
		}
		n.sched = sched
		return n
	}
	a, b := newNode("a"), newNode("b")
	ctx := context.Background()
	t0 := clk.Now()
	at := func(d time.Duration) { clk.Advance(t0.Add(d).Sub(clk.Now())) }
	var stopOnce sync.Once
	stopA := func() { stopOnce.Do(func() { _ = a.sched.Stop() }) }
	t.Cleanup(func() { _ = b.sched.Stop() })
	t.Cleanup(stopA)

	// finished waits for want runs to have ended well.
	finished := func(want int) []store.JobRun {
		t.Helper()
		var runs []store.JobRun
		deadline := time.Now().Add(30 * time.Second)
		for {
			runs, err = st.JobRuns(ctx, "tick", 100)
			if err != nil {
				t.Fatal(err)
			}
			done := 0
			for _, r := range runs {
				if r.Result == store.JobOK {
					done++
				}
			}
			if done >= want {
				return runs
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d runs ended well, want %d: %+v", done, want, runs)
			}
			time.Sleep(5 * time.Millisecond) // the nodes' goroutines, not a clock
		}
	}
	check := func(when string, wantA, wantB int32) {
		t.Helper()
		if a.runs.Load() != wantA || b.runs.Load() != wantB {
			t.Fatalf("%s: a ran %d, b ran %d; want %d and %d", when, a.runs.Load(), b.runs.Load(), wantA, wantB)
		}
	}

	// a starts first and leads: it runs the never-run job at once. b
	// starts 20 minutes later, so its timers tick 20 minutes after a's.
	if err := a.sched.Start(ctx); err != nil {
		t.Fatal(err)
	}
	finished(1)
	at(20 * time.Minute)
	if err := b.sched.Start(ctx); err != nil {
		t.Fatal(err)
	}
	check("after both started", 1, 0)

	// a's ticks run, b's are skipped: one run an hour.
	for h := 1; h <= 2; h++ {
		at(time.Duration(h) * time.Hour)
		finished(1 + h)
		at(time.Duration(h)*time.Hour + 20*time.Minute)
		check("after b's tick", int32(1+h), 0)
	}

	// a's next run hangs, and a's session dies meanwhile.
	heldNode.Store(a)
	at(3 * time.Hour)
	waitUntil(t, "a starts its fourth run", func() bool { return a.runs.Load() == 4 })
	killSession(t, admin, a.elect)
	at(3*time.Hour + poll) // within one poll, b leads and reruns the cut run
	runs := finished(4)
	check("after the leader died", 4, 1)
	var interrupted int
	for _, r := range runs {
		if r.Result == store.JobInterrupted {
			interrupted++
		}
	}
	if interrupted != 1 || runs[0].Trigger != "missed" || runs[0].Result != store.JobOK {
		t.Fatalf("runs %+v: want a's run interrupted and b's missed run after it", runs)
	}
	if err := a.sched.Trigger("tick", "token:x"); !errors.Is(err, lifecycle.ErrNotLeader) || ca.KindOf(err) != ca.Unavailable {
		t.Errorf("a manual run on the node that lost the election: %v, want ErrNotLeader, Unavailable", err)
	}
	close(hold)
	stopA()

	// b's own tick 20 minutes after its takeover run is the same period:
	// skipped. The one after runs.
	at(3*time.Hour + 20*time.Minute)
	waitUntil(t, "b skips its tick", func() bool { return b.skipped(t) == 1 || b.runs.Load() != 1 })
	check("at b's tick after the takeover", 4, 1)
	at(4*time.Hour + 20*time.Minute)
	finished(5)
	check("an hour later", 4, 2)
	if err := b.sched.Trigger("tick", "token:x"); err != nil {
		t.Errorf("a manual run on the leader: %v", err)
	}
}

// waitUntil polls cond, which background goroutines (not a clock) make
// true, for up to 30 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
