package storetest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

func testAuditRoundTrip(t *testing.T, open Opener) {
	t.Parallel()
	s := openTest(t, open)
	ctx := context.Background()
	inputs := []audit.Event{
		{Time: testStart, Actor: "system", Action: "ca.initialized", Target: "root",
			Detail: map[string]string{"algorithm": "ECDSA-P256", "empty": "", "unicode": "ünïcødé\n"}},
		{Time: testStart.Add(time.Nanosecond), Actor: "cli", Action: "key.generated", Target: "key-1", Detail: nil},
		{Time: testStart.Add(time.Second), Actor: "token:ab12", Action: "request.refused", Detail: map[string]string{}},
		// Not UTC: stored as the same instant in UTC.
		{Time: testStart.In(time.FixedZone("CET", 3600)).Add(time.Minute), Actor: "system", Action: "zone"},
	}
	var appended []audit.Event
	mustTx(t, s, func(tx store.Tx) error {
		for _, e := range inputs {
			got, err := tx.AppendAudit(e)
			if err != nil {
				return err
			}
			appended = append(appended, got)
		}
		return nil
	})
	prev := audit.GenesisHash()
	for i, e := range appended {
		if e.Seq != int64(i+1) || !bytes.Equal(e.PrevHash, prev) || len(e.Hash) != audit.HashSize {
			t.Errorf("appended[%d] = seq %d prev %x hash %x; want seq %d prev %x", i, e.Seq, e.PrevHash, e.Hash, i+1, prev)
		}
		if !e.Time.Equal(inputs[i].Time) || e.Time.Location() != time.UTC {
			t.Errorf("appended[%d].Time = %v, want %v in UTC", i, e.Time, inputs[i].Time)
		}
		prev = e.Hash
	}
	// Nil and empty Detail encode identically and read back as nil.
	for i := range appended {
		if len(appended[i].Detail) == 0 {
			appended[i].Detail = nil
		}
	}
	scanned := checkChain(t, s, nil)
	if !reflect.DeepEqual(scanned, appended) {
		t.Errorf("ScanAudit =\n%+v\nwant\n%+v", scanned, appended)
	}
	listed, next, err := s.AuditEvents(ctx, store.AuditFilter{})
	if err != nil || next != 0 {
		t.Fatalf("AuditEvents = next %d, %v", next, err)
	}
	if !reflect.DeepEqual(listed, appended) {
		t.Errorf("AuditEvents =\n%+v\nwant\n%+v", listed, appended)
	}

	// A time that cannot be stored as int64 Unix nanoseconds would be read
	// back as a different instant than the one hashed: refuse it rather than
	// write an event that can never verify.
	for _, tm := range []time.Time{{}, time.Unix(0, 0), time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)} {
		err := s.WithTx(ctx, func(tx store.Tx) error {
			_, err := tx.AppendAudit(audit.Event{Time: tm, Actor: "system", Action: "bad.time"})
			return err
		})
		if err == nil {
			t.Errorf("AppendAudit with time %v succeeded, want an error", tm)
		}
	}
	if got := checkChain(t, s, nil); len(got) != len(appended) {
		t.Errorf("%d events after refused appends, want %d", len(got), len(appended))
	}
}

func testAuditEventsFilter(t *testing.T, open Opener) {
	t.Parallel()
	s := openTest(t, open)
	ctx := context.Background()
	type ev struct{ actor, action, target string }
	// Event i+1 happens at testStart + i minutes.
	input := []ev{
		{"system", "ca.initialized", "root"},           // 1
		{"acme:1", "cert.issued", "01"},                // 2
		{"acme:1", "cert.issued", "02"},                // 3
		{"token:ops", "cert.revoked", "01"},            // 4
		{"acme:1", "certificate.issued", "03"},         // 5: not under "cert."
		{"system", "key.generated", "key-1"},           // 6
		{"token:ops", "request.refused", ""},           // 7
		{"acme:2", "cert.issued", "04"},                // 8
		{"cli", "cert_x.issued", "05"},                 // 9
		{"cli", "certYx.issued", "06"},                 // 10: "cert_x." must not match it
		{"system", "cert.", "07"},                      // 11: the prefix itself
		{"acme:1", "cert.issued.retried", "02"},        // 12
		{"system", "kek.rotated", "kek-2"},             // 13
		{"token:ops", "cert.revoked", "02"},            // 14
		{"acme:1", "cert.issued", "08"},                // 15
		{"system", "config.loaded", "/etc/sigil.yaml"}, // 16
	}
	mustTx(t, s, func(tx store.Tx) error {
		for i, e := range input {
			if _, err := tx.AppendAudit(audit.Event{Time: testStart.Add(time.Duration(i) * time.Minute),
				Actor: e.actor, Action: e.action, Target: e.target}); err != nil {
				return err
			}
		}
		return nil
	})
	at := func(seq int) time.Time { return testStart.Add(time.Duration(seq-1) * time.Minute) }

	tests := []struct {
		name string
		f    store.AuditFilter
		want []int64
	}{
		{"all", store.AuditFilter{}, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}},
		{"action exact", store.AuditFilter{Action: "cert.issued"}, []int64{2, 3, 8, 15}},
		{"action exact has no prefix match", store.AuditFilter{Action: "cert"}, []int64{}},
		{"action prefix", store.AuditFilter{Action: "cert."}, []int64{2, 3, 4, 8, 11, 12, 14, 15}},
		{"action deeper prefix", store.AuditFilter{Action: "cert.issued."}, []int64{12}},
		{"action prefix underscore is literal", store.AuditFilter{Action: "cert_x."}, []int64{9}},
		{"action prefix unknown", store.AuditFilter{Action: "nope."}, []int64{}},
		{"actor", store.AuditFilter{Actor: "token:ops"}, []int64{4, 7, 14}},
		{"target", store.AuditFilter{Target: "02"}, []int64{3, 12, 14}},
		{"actor and action prefix", store.AuditFilter{Actor: "acme:1", Action: "cert."}, []int64{2, 3, 12, 15}},
		{"after (inclusive)", store.AuditFilter{After: at(14)}, []int64{14, 15, 16}},
		{"before (exclusive)", store.AuditFilter{Before: at(3)}, []int64{1, 2}},
		{"time range", store.AuditFilter{After: at(4), Before: at(7)}, []int64{4, 5, 6}},
		{"time range and action", store.AuditFilter{After: at(3), Before: at(15), Action: "cert.issued"}, []int64{3, 8}},
		{"cursor", store.AuditFilter{Cursor: 13}, []int64{14, 15, 16}},
		{"cursor and action", store.AuditFilter{Cursor: 3, Action: "cert.issued"}, []int64{8, 15}},
		{"cursor at end", store.AuditFilter{Cursor: 16}, []int64{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			events, next, err := s.AuditEvents(ctx, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			got := []int64{}
			for _, e := range events {
				got = append(got, e.Seq)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("AuditEvents(%+v) = %v, want %v", tt.f, got, tt.want)
			}
			if next != 0 {
				t.Errorf("next = %d, want 0 (one page)", next)
			}
		})
	}

	t.Run("pages", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			f    store.AuditFilter
			want []int64
		}{
			{store.AuditFilter{Limit: 5}, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}},
			{store.AuditFilter{Limit: 4}, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}},
			{store.AuditFilter{Limit: 3, Action: "cert."}, []int64{2, 3, 4, 8, 11, 12, 14, 15}},
			{store.AuditFilter{Limit: 1, Actor: "token:ops", After: at(5)}, []int64{7, 14}},
		}
		for _, tt := range tests {
			f := tt.f
			var got []int64
			for range 100 {
				events, next, err := s.AuditEvents(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				if len(events) > f.Limit {
					t.Errorf("page of %d events, limit %d", len(events), f.Limit)
				}
				for _, e := range events {
					got = append(got, e.Seq)
				}
				if next == 0 {
					break
				}
				if next != events[len(events)-1].Seq {
					t.Errorf("next = %d, want the last seq on the page, %d", next, events[len(events)-1].Seq)
				}
				f.Cursor = next
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("paging %+v: %v, want %v", tt.f, got, tt.want)
			}
		}
	})
}

func testCheckpointer(t *testing.T, open Opener) {
	t.Parallel()
	signer := newTestSigner(t)
	s := openWith(t, open, Options{Checkpointer: signer.checkpointer(10)})
	ctx := context.Background()
	var events []audit.Event
	for i := range 35 {
		mustTx(t, s, func(tx store.Tx) error {
			e, err := tx.AppendAudit(audit.Event{Time: testStart.Add(time.Duration(i) * time.Second), Actor: "system", Action: "tick"})
			events = append(events, e)
			return err
		})
	}
	checkSigned := func(cps []audit.Checkpoint) {
		t.Helper()
		for _, c := range cps {
			if err := audit.VerifyCheckpoint(signer.pub, c); err != nil {
				t.Errorf("checkpoint %d: %v", c.Seq, err)
			}
			if c.Seq < 1 || c.Seq > int64(len(events)) || !bytes.Equal(c.Hash, events[c.Seq-1].Hash) {
				t.Errorf("checkpoint %d does not match the event it names", c.Seq)
			}
		}
	}

	// WithTx returns before the writer decides whether to checkpoint, but
	// the writer decides before it takes the next request: after the 35th
	// commit, the checkpoints due at 10, 20 and 30 are written.
	cps, err := s.Checkpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(cps) < 3 {
		t.Fatalf("checkpoints at %v after 35 events with Every=10, want at least 3", seqs(cps))
	}
	// Every commit here adds one event, so "at most Every events unsigned"
	// puts the checkpoints exactly at 10, 20 and 30.
	if got, want := seqs(cps), []int64{10, 20, 30}; !slices.Equal(got, want) {
		t.Errorf("checkpoints at %v, want %v", got, want)
	}
	checkSigned(cps)

	if err := s.Checkpoint(ctx); err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	after, err := s.Checkpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(cps)+1 || after[len(after)-1].Seq != 35 {
		t.Errorf("after Checkpoint: seqs %v, want %v plus 35", seqs(after), seqs(cps))
	}
	checkSigned(after)

	n := signer.signed()
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatalf("second Checkpoint: %v", err)
	}
	again, err := s.Checkpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != len(after) || signer.signed() != n {
		t.Errorf("second Checkpoint with no new events: %d checkpoints (want %d), %d signatures (want 0)",
			len(again), len(after), signer.signed()-n)
	}
	checkChain(t, s, signer.keys())
}

// testSigner signs checkpoints with one Ed25519 key and counts what it signs.
type testSigner struct {
	pub  ed25519.PublicKey
	priv ed25519.PrivateKey

	mu    sync.Mutex
	heads []audit.Head
}

func newTestSigner(t testing.TB) *testSigner {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &testSigner{pub: pub, priv: priv}
}

// checkpointer returns ts as a store's checkpoint signer, every events.
func (ts *testSigner) checkpointer(every int) *store.Checkpointer {
	return &store.Checkpointer{Every: every, Sign: func(h audit.Head) (audit.Checkpoint, error) {
		ts.mu.Lock()
		ts.heads = append(ts.heads, h)
		ts.mu.Unlock()
		return audit.SignCheckpoint(rand.Reader, ts.priv, "audit-1", h, testStart.Add(time.Duration(h.Seq)*time.Second))
	}}
}

// signed returns how many heads ts has signed.
func (ts *testSigner) signed() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return len(ts.heads)
}

func (ts *testSigner) keys() map[string]crypto.PublicKey {
	return map[string]crypto.PublicKey{"audit-1": ts.pub}
}

func seqs(cps []audit.Checkpoint) []int64 {
	var out []int64
	for _, c := range cps {
		out = append(out, c.Seq)
	}
	return out
}
