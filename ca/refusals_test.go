package ca

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/ca/keystore"
)

// lockedLog is a log sink safe for concurrent writers.
type lockedLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) lines(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), msg)
}

// TestUnauthenticatedRefusalSummaries (issue 15, item 3): unauthenticated
// refusals write nothing to the audit log when they happen; they are
// counted in the metric, logged at most once per refusalLogEvery, and
// written as one summary per source at each flush; a source beyond the
// bound is summed as "other". The flush loop runs on the injected clock.
func TestUnauthenticatedRefusalSummaries(t *testing.T) {
	t.Parallel()
	tc := newTestCA(t, keystore.ECDSAP256, keystore.ECDSAP256)
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	logs := &lockedLog{}
	a, err := New(ctx, Config{Profiles: DefaultProfiles(), BaseURL: testBaseURL, Clock: tc.clk,
		Logger: slog.New(slog.NewTextHandler(logs, nil)), Metrics: NewMetrics(reg)}, tc.st, tc.init.Keystore)
	if err != nil {
		t.Fatal(err)
	}
	rc := &revokeCA{testCA: tc, a: a, reg: reg}
	deny := errorf(Unauthorized, "invalid or expired token")
	head := rc.head(t)

	for i := range 100 {
		a.RecordUnauthenticatedRefusal(ctx, UnauthenticatedRefusal{Surface: "api", Source: "192.0.2.1", Method: "GET",
			Path: "/v1/certificates", TokenID: fmt.Sprintf("%016x", i), Err: deny})
	}
	a.RecordUnauthenticatedRefusal(ctx, UnauthenticatedRefusal{Surface: "renew", Source: "192.0.2.1", Err: deny})
	a.RecordUnauthenticatedRefusal(ctx, UnauthenticatedRefusal{Surface: "ui.login", Source: "192.0.2.2", Err: deny})
	if evs := rc.eventsAfter(t, head); len(evs) != 0 {
		t.Fatalf("%d audit events written by unauthenticated refusals, want none", len(evs))
	}
	if got := counterValue(t, reg, "sigil_unauthenticated_refusals_total", "unauthorized", "api"); got != 100 {
		t.Errorf("metric api/unauthorized = %v, want 100", got)
	}
	if n := logs.lines("unauthenticated request refused"); n != 1 {
		t.Errorf("%d log lines for 102 refusals within %s, want 1", n, refusalLogEvery)
	}
	tc.clk.Advance(refusalLogEvery)
	a.RecordUnauthenticatedRefusal(ctx, UnauthenticatedRefusal{Surface: "api", Source: "192.0.2.1", Err: deny})
	if n := logs.lines("unauthenticated request refused"); n != 2 || !strings.Contains(logs.b.String(), "suppressed=101") {
		t.Errorf("%d log lines after %s, want 2, the second counting 101 left out:\n%s", n, refusalLogEvery, logs.b.String())
	}

	// The loop flushes on the fake clock's ticker: one event per source.
	loopCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.RunRefusalSummaries(loopCtx)
	}()
	if err := tc.clk.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	tc.clk.Advance(RefusalSummaryEvery)
	evs := waitEvents(t, rc, head, 2)
	got := map[string]string{}
	for _, ev := range evs {
		if ev.Action != "access.refused.summary" || ev.Actor != "anonymous" {
			t.Errorf("event %+v, want an anonymous access.refused.summary", ev)
		}
		got[ev.Target] = ev.Detail["count"] + " " + ev.Detail["by"]
	}
	want := map[string]string{"192.0.2.1": "102 api:unauthorized=101,renew:unauthorized=1", "192.0.2.2": "1 ui.login:unauthorized=1"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("summaries %v, want %v", got, want)
	}

	// Nothing pending: the next tick writes nothing. More sources than the
	// bound: the rest is summed as "other"; the last flush is at stop.
	head = rc.head(t)
	for i := range maxRefusalSources + 10 {
		a.RecordUnauthenticatedRefusal(ctx, UnauthenticatedRefusal{Surface: "api", Source: fmt.Sprintf("198.51.100.%d", i), Err: deny})
	}
	a.refusals.mu.Lock()
	n := len(a.refusals.pending)
	a.refusals.mu.Unlock()
	if n != maxRefusalSources+1 {
		t.Errorf("%d sources pending, want %d and other", n, maxRefusalSources)
	}
	stop()
	<-done
	evs = rc.eventsAfter(t, head)
	if len(evs) != maxRefusalSources+1 {
		t.Fatalf("%d summaries at stop, want %d", len(evs), maxRefusalSources+1)
	}
	for _, ev := range evs {
		if ev.Target == otherSource && ev.Detail["count"] != "10" {
			t.Errorf("other: %+v, want 10 refusals", ev)
		}
	}
	if err := a.FlushRefusalSummaries(ctx); err != nil {
		t.Fatal(err)
	}
	if evs := rc.eventsAfter(t, head); len(evs) != maxRefusalSources+1 {
		t.Errorf("a flush with nothing pending wrote %d events", len(evs)-maxRefusalSources-1)
	}
}

// counterValue reads the sample of counter name whose label values are
// values, in the order of the label names, from reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name string, values ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(values) {
				continue
			}
			for i, l := range m.GetLabel() {
				if l.GetValue() != values[i] {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// waitEvents waits for n audit events after seq: the flush loop writes
// them on its own goroutine once the fake clock has ticked.
func waitEvents(t *testing.T, rc *revokeCA, seq int64, n int) []audit.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs := rc.eventsAfter(t, seq)
		if len(evs) >= n || time.Now().After(deadline) {
			return evs
		}
		time.Sleep(5 * time.Millisecond) // waiting for another goroutine's write, not for time to pass
	}
}

// TestAuditRefusal checks the one shape of an audited refusal: the reason
// is the error's kind (found through wrapping), the detail its Detail or
// "internal error" with the cause logged and never recorded, the caller's
// detail kept, and the action request.refused unless named.
func TestAuditRefusal(t *testing.T) {
	t.Parallel()
	tc := newTestCA(t, keystore.ECDSAP256, keystore.ECDSAP256)
	ctx := context.Background()
	logs := &lockedLog{}
	a, err := New(ctx, Config{Profiles: DefaultProfiles(), BaseURL: testBaseURL, Clock: tc.clk,
		Logger: slog.New(slog.NewTextHandler(logs, nil))}, tc.st, tc.init.Keystore)
	if err != nil {
		t.Fatal(err)
	}
	rc := &revokeCA{testCA: tc, a: a}
	tests := []struct {
		name    string
		r       Refusal
		action  string
		detail  map[string]string
		logged  bool
		notCopy string
	}{
		{
			name:   "typed, wrapped",
			r:      Refusal{Actor: "token:ab", Target: "01", Detail: map[string]string{"request": "revoke"}, Err: fmt.Errorf("revoke: %w", errorf(Conflict, "already revoked"))},
			action: audit.ActionRequestRefused,
			detail: map[string]string{"request": "revoke", "reason": "conflict", "detail": "already revoked"},
		},
		{
			name:    "internal",
			r:       Refusal{Actor: "system", Err: internal("load key", fmt.Errorf("disk secret-cause")), Op: "issuance", LogAttrs: []any{"profile", "server"}},
			action:  audit.ActionRequestRefused,
			detail:  map[string]string{"reason": "internal", "detail": "internal error"},
			logged:  true,
			notCopy: "secret-cause",
		},
		{
			name:   "named action, reason only",
			r:      Refusal{Action: audit.ActionAccessRefused, Actor: "token:cd", ReasonOnly: true, Detail: map[string]string{"path": "/v1/keys"}, Err: errorf(Forbidden, "role issuer may not")},
			action: audit.ActionAccessRefused,
			detail: map[string]string{"path": "/v1/keys", "reason": "forbidden"},
		},
	}
	for _, tt := range tests {
		head := rc.head(t)
		a.AuditRefusal(ctx, tt.r)
		evs := rc.eventsAfter(t, head)
		if len(evs) != 1 {
			t.Fatalf("%s: %d events, want 1", tt.name, len(evs))
		}
		ev := evs[0]
		if ev.Action != tt.action || ev.Actor != tt.r.Actor || ev.Target != tt.r.Target || fmt.Sprint(ev.Detail) != fmt.Sprint(tt.detail) {
			t.Errorf("%s: event %s %s %s %v, want %s %s %s %v", tt.name, ev.Action, ev.Actor, ev.Target, ev.Detail,
				tt.action, tt.r.Actor, tt.r.Target, tt.detail)
		}
		if tt.notCopy != "" && strings.Contains(fmt.Sprint(ev.Detail), tt.notCopy) {
			t.Errorf("%s: the internal cause reached the audit record: %v", tt.name, ev.Detail)
		}
		if tt.logged && (logs.lines("issuance failed") != 1 || logs.lines("secret-cause") != 1) {
			t.Errorf("%s: internal failure not logged once with its cause:\n%s", tt.name, logs.b.String())
		}
	}
}
