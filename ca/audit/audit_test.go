package audit

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/internal/testclock"
)

// testStart is the fixed time of the first test event; tests never read the clock.
var testStart = testclock.At(time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC))

// testChain is a signed chain and the keys that verify it.
type testChain struct {
	events      []Event
	checkpoints []Checkpoint
	keys        map[string]crypto.PublicKey
	edKey       ed25519.PrivateKey
	ecKey       *ecdsa.PrivateKey
}

// newTestKeys returns an Ed25519 and an ECDSA P-256 signer.
func newTestKeys(t testing.TB) (ed25519.PrivateKey, *ecdsa.PrivateKey) {
	t.Helper()
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return ed, ec
}

// buildEvents returns n chained events starting at testStart.
func buildEvents(n int) []Event {
	events := make([]Event, n)
	var head Head
	for i := range events {
		e := Event{
			Time:   testStart.Add(time.Duration(i) * time.Second),
			Actor:  []string{"system", "token:ab12", "cli"}[i%3],
			Action: []string{"cert.issued", "request.refused", "key.generated"}[i%3],
			Target: fmt.Sprintf("%032x", i),
		}
		if i%2 == 0 {
			e.Detail = map[string]string{"profile": "server", "channel": "acme", "n": fmt.Sprint(i)}
		}
		head = Next(head, &e)
		events[i] = e
	}
	return events
}

// newTestChain builds a 50-event chain checkpointed every 10 events,
// alternating Ed25519 ("ed") and ECDSA P-256 ("ec") keys, with both keys
// signing the final head.
func newTestChain(t testing.TB) *testChain {
	t.Helper()
	ed, ec := newTestKeys(t)
	tc := &testChain{
		events: buildEvents(50),
		keys:   map[string]crypto.PublicKey{"ed": ed.Public(), "ec": ec.Public()},
		edKey:  ed,
		ecKey:  ec,
	}
	for seq := 10; seq <= 50; seq += 10 {
		signers := []string{"ed"}
		if seq%20 == 0 {
			signers = []string{"ec"}
		}
		if seq == 50 {
			signers = []string{"ed", "ec"}
		}
		for _, id := range signers {
			tc.checkpoints = append(tc.checkpoints, tc.sign(t, id, seq))
		}
	}
	return tc
}

// sign returns a checkpoint of event seq by key id.
func (tc *testChain) sign(t testing.TB, id string, seq int) Checkpoint {
	t.Helper()
	var s crypto.Signer = tc.edKey
	if id == "ec" {
		s = tc.ecKey
	}
	e := tc.events[seq-1]
	c, err := SignCheckpoint(rand.Reader, s, id, Head{Seq: e.Seq, Hash: e.Hash}, e.Time.Add(time.Minute))
	if err != nil {
		t.Fatalf("SignCheckpoint(%s, %d): %v", id, seq, err)
	}
	return c
}

// cloneEvents deep-copies events so a case can tamper freely.
func cloneEvents(events []Event) []Event {
	out := make([]Event, len(events))
	for i, e := range events {
		e.Detail = maps.Clone(e.Detail)
		e.PrevHash = slices.Clone(e.PrevHash)
		e.Hash = slices.Clone(e.Hash)
		out[i] = e
	}
	return out
}

// rehash recomputes every hash from index i on, as an attacker rewriting the
// chain without the checkpoint keys would.
func rehash(events []Event, i int) {
	head := Head{}
	if i > 0 {
		head = Head{Seq: events[i-1].Seq, Hash: events[i-1].Hash}
	}
	for j := i; j < len(events); j++ {
		head = Next(head, &events[j])
	}
}

func TestVerifyOK(t *testing.T) {
	t.Parallel()
	tc := newTestChain(t)
	head, err := VerifyAll(tc.events, tc.checkpoints, tc.keys)
	if err != nil {
		t.Fatalf("VerifyAll: %v", err)
	}
	last := tc.events[len(tc.events)-1]
	if head.Seq != 50 || !bytes.Equal(head.Hash, last.Hash) {
		t.Errorf("head = %d %x, want 50 %x", head.Seq, head.Hash, last.Hash)
	}

	// Streaming gives the same answer with checkpoints in any order.
	cps := slices.Clone(tc.checkpoints)
	slices.Reverse(cps)
	v := NewVerifier(cps, tc.keys)
	for _, e := range tc.events {
		if err := v.Add(e); err != nil {
			t.Fatalf("Add(%d): %v", e.Seq, err)
		}
	}
	if v.Count() != 50 {
		t.Errorf("Count() = %d, want 50", v.Count())
	}
	head2, err := v.Finish()
	if err != nil || head2.Seq != 50 || !bytes.Equal(head2.Hash, last.Hash) {
		t.Errorf("Finish() = %d %x, %v; want 50 %x, nil", head2.Seq, head2.Hash, err, last.Hash)
	}
}

func TestVerifyTampering(t *testing.T) {
	t.Parallel()
	tc := newTestChain(t)
	_, otherEC := newTestKeys(t)

	tests := []struct {
		name         string
		tamper       func(events []Event, cps []Checkpoint) ([]Event, []Checkpoint)
		keys         map[string]crypto.PublicKey // nil means tc.keys
		wantSeq      int64
		wantReason   string
		wantCount    int64 // events verified before the failure
		noCheckpoint bool  // also verify with no checkpoints and expect success
	}{
		{
			name: "changed actor",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				ev[16].Actor = "root"
				return ev, cps
			},
			wantSeq: 17, wantReason: "hash mismatch (event altered)", wantCount: 16,
		},
		{
			name: "changed detail value",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				ev[20].Detail["profile"] = "ca"
				return ev, cps
			},
			wantSeq: 21, wantReason: "hash mismatch (event altered)", wantCount: 20,
		},
		{
			name: "added detail key",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				ev[21].Detail = map[string]string{"override": "yes"}
				return ev, cps
			},
			wantSeq: 22, wantReason: "hash mismatch (event altered)", wantCount: 21,
		},
		{
			name: "changed time by one nanosecond",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				ev[33].Time = ev[33].Time.Add(time.Nanosecond)
				return ev, cps
			},
			wantSeq: 34, wantReason: "hash mismatch (event altered)", wantCount: 33,
		},
		{
			name: "changed prev hash",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				ev[5].PrevHash[0] ^= 1
				return ev, cps
			},
			wantSeq: 6, wantReason: "link broken", wantCount: 5,
		},
		{
			name: "first event not linked to genesis",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				ev[0].PrevHash[31] = 1
				return ev, cps
			},
			wantSeq: 1, wantReason: "not the genesis hash", wantCount: 0,
		},
		{
			name: "deleted row",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				return slices.Delete(ev, 40, 41), cps
			},
			wantSeq: 41, wantReason: "event 41 missing (deleted?)", wantCount: 40,
		},
		{
			name: "deleted first row",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				return ev[1:], cps
			},
			wantSeq: 1, wantReason: "event 1 missing (deleted?)", wantCount: 0,
		},
		{
			name: "deleted three rows",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				return slices.Delete(ev, 11, 14), cps
			},
			wantSeq: 12, wantReason: "events 12..14 missing (deleted?)", wantCount: 11,
		},
		{
			name: "duplicated row",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				return slices.Insert(ev, 8, ev[7]), cps
			},
			wantSeq: 9, wantReason: "expected event 9, found 8", wantCount: 8,
		},
		{
			name: "two rows swapped",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				ev[40], ev[41] = ev[41], ev[40]
				return ev, cps
			},
			wantSeq: 41, wantReason: "expected event 41, found 42 (rows out of order)", wantCount: 40,
		},
		{
			name: "two distant rows swapped",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				ev[40], ev[42] = ev[42], ev[40]
				return ev, cps
			},
			wantSeq: 41, wantReason: "expected event 41, found 43 (rows out of order)", wantCount: 40,
		},
		{
			name: "two rows swapped with their seq values",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				ev[40], ev[41] = ev[41], ev[40]
				ev[40].Seq, ev[41].Seq = 41, 42
				return ev, cps
			},
			wantSeq: 41, wantReason: "link broken", wantCount: 40,
		},
		{
			name: "two rows' contents swapped, hash columns kept",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				a, b := ev[40], ev[41]
				ev[40].Time, ev[40].Actor, ev[40].Action, ev[40].Target, ev[40].Detail = b.Time, b.Actor, b.Action, b.Target, b.Detail
				ev[41].Time, ev[41].Actor, ev[41].Action, ev[41].Target, ev[41].Detail = a.Time, a.Actor, a.Action, a.Target, a.Detail
				return ev, cps
			},
			wantSeq: 41, wantReason: "hash mismatch (event altered)", wantCount: 40,
		},
		{
			name: "last rows cut",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				return ev[:47], cps
			},
			wantSeq: 48, wantReason: "log ends at seq 47 but checkpoint covers seq 50: events 48..50 missing", wantCount: 47,
			noCheckpoint: true,
		},
		{
			name: "last row cut",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				return ev[:49], cps
			},
			wantSeq: 50, wantReason: "log ends at seq 49 but checkpoint covers seq 50: event 50 missing", wantCount: 49,
			noCheckpoint: true,
		},
		{
			name: "every row cut",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				return nil, cps
			},
			wantSeq: 1, wantReason: "log ends at seq 0 but checkpoint covers seq 50: events 1..50 missing", wantCount: 0,
			noCheckpoint: true,
		},
		{
			name: "chain rewritten after an edit",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				ev[32].Action = "cert.revoked"
				rehash(ev, 32)
				return ev, cps
			},
			wantSeq: 40, wantReason: "checkpoint mismatch", wantCount: 39,
			noCheckpoint: true,
		},
		{
			name: "rewritten and cut before the next checkpoint",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				ev = ev[:38]
				ev[32].Action = "cert.revoked"
				rehash(ev, 32)
				return ev, cps
			},
			wantSeq: 39, wantReason: "log ends at seq 38 but checkpoint covers seq 50", wantCount: 38,
			noCheckpoint: true,
		},
		{
			name: "bad checkpoint signature",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				cps[1].Signature[5] ^= 0x40 // checkpoint at 20 (ECDSA)
				return ev, cps
			},
			wantSeq: 20, wantReason: "bad checkpoint signature (key \"ec\")", wantCount: 19,
		},
		{
			name: "checkpoint time altered",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				cps[0].Time = cps[0].Time.Add(-time.Hour) // checkpoint at 10 (Ed25519)
				return ev, cps
			},
			wantSeq: 10, wantReason: "bad checkpoint signature (key \"ed\")", wantCount: 9,
		},
		{
			name: "forged checkpoint with new head",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				ev[44].Target = "forged"
				rehash(ev, 44)
				cps[4].Hash = slices.Clone(ev[49].Hash) // ed checkpoint at 50
				return ev, cps
			},
			wantSeq: 50, wantReason: "bad checkpoint signature (key \"ed\")", wantCount: 49,
		},
		{
			name: "checkpoint signed by unknown key id",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				c, err := SignCheckpoint(rand.Reader, otherEC, "rogue", Head{Seq: 30, Hash: ev[29].Hash}, testStart)
				if err != nil {
					panic(err)
				}
				return ev, append(cps, c)
			},
			wantSeq: 30, wantReason: "checkpoint signed by unknown key \"rogue\"", wantCount: 29,
		},
		{
			name: "checkpoint signed by wrong key for its id",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				c, err := SignCheckpoint(rand.Reader, otherEC, "ec", Head{Seq: 30, Hash: ev[29].Hash}, testStart)
				if err != nil {
					panic(err)
				}
				return ev, append(cps, c)
			},
			wantSeq: 30, wantReason: "bad checkpoint signature (key \"ec\")", wantCount: 29,
		},
		{
			name: "bad checkpoint past the end",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				c := cps[len(cps)-1]
				c.Seq = 60
				return ev, append(cps, c)
			},
			wantSeq: 60, wantReason: "bad checkpoint signature", wantCount: 50,
		},
		{
			name: "key missing from the key set",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				return ev, cps
			},
			keys:    map[string]crypto.PublicKey{"ed": tc.edKey.Public()},
			wantSeq: 20, wantReason: "checkpoint signed by unknown key \"ec\"", wantCount: 19,
		},
		{
			name: "key of the wrong type",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				return ev, cps
			},
			keys:    map[string]crypto.PublicKey{"ed": tc.ecKey.Public(), "ec": tc.ecKey.Public()},
			wantSeq: 10, wantReason: "bad checkpoint signature (key \"ed\")", wantCount: 9,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cps := slices.Clone(tc.checkpoints)
			for i := range cps {
				cps[i].Hash = slices.Clone(cps[i].Hash)
				cps[i].Signature = slices.Clone(cps[i].Signature)
			}
			events, cps := tt.tamper(cloneEvents(tc.events), cps)
			keys := tt.keys
			if keys == nil {
				keys = tc.keys
			}

			_, err := VerifyAll(events, cps, keys)
			checkVerifyError(t, "VerifyAll", err, tt.wantSeq, tt.wantReason)

			// The streaming verifier fails at the same event, and stays failed.
			v := NewVerifier(cps, keys)
			var first error
			for _, e := range events {
				if err := v.Add(e); err != nil {
					first = err
					break
				}
			}
			if got := v.Count(); got != tt.wantCount {
				t.Errorf("Count() = %d, want %d", got, tt.wantCount)
			}
			head, err := v.Finish()
			if first != nil && err != first {
				t.Errorf("Finish() error = %v, want the first Add error %v", err, first)
			}
			if first != nil && len(events) > 0 {
				if again := v.Add(events[len(events)-1]); again != first {
					t.Errorf("Add after failure = %v, want %v", again, first)
				}
			}
			var ve *VerifyError
			if !errors.As(err, &ve) || ve.Seq != tt.wantSeq {
				t.Errorf("streaming error = %v, want one at event %d", err, tt.wantSeq)
			}
			if head.Seq != tt.wantCount {
				t.Errorf("Finish() head.Seq = %d, want %d", head.Seq, tt.wantCount)
			}

			if tt.noCheckpoint {
				// Without checkpoints the same log passes: only they catch it.
				if head, err := VerifyAll(events, nil, nil); err != nil || head.Seq != int64(len(events)) {
					t.Errorf("VerifyAll without checkpoints = %d, %v; want %d, nil", head.Seq, err, len(events))
				}
			}
		})
	}
}

// checkVerifyError fails t unless err is a *VerifyError at wantSeq whose
// reason contains wantReason.
func checkVerifyError(t *testing.T, what string, err error, wantSeq int64, wantReason string) {
	t.Helper()
	var ve *VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("%s error = %v (%T), want *VerifyError", what, err, err)
	}
	if ve.Seq != wantSeq {
		t.Errorf("%s error at event %d, want %d: %v", what, ve.Seq, wantSeq, err)
	}
	if !strings.Contains(ve.Reason, wantReason) {
		t.Errorf("%s reason = %q, want it to contain %q", what, ve.Reason, wantReason)
	}
	if want := fmt.Sprintf("audit chain broken at event %d: ", ve.Seq); !strings.HasPrefix(err.Error(), want) {
		t.Errorf("%s Error() = %q, want prefix %q", what, err.Error(), want)
	}
}

func TestVerifyEmpty(t *testing.T) {
	t.Parallel()
	ed, _ := newTestKeys(t)
	keys := map[string]crypto.PublicKey{"ed": ed.Public()}
	empty, err := SignCheckpoint(rand.Reader, ed, "ed", Head{}, testStart)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		events      []Event
		checkpoints []Checkpoint
		wantSeq     int64
		wantErr     bool
	}{
		{name: "no events, no checkpoints"},
		{name: "no events, empty-chain checkpoint", checkpoints: []Checkpoint{empty}},
		{name: "events after empty-chain checkpoint", events: buildEvents(3), checkpoints: []Checkpoint{empty}, wantSeq: 3},
		{name: "events without checkpoints", events: buildEvents(5), wantSeq: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			head, err := VerifyAll(tt.events, tt.checkpoints, keys)
			if err != nil {
				t.Fatalf("VerifyAll: %v", err)
			}
			if head.Seq != tt.wantSeq {
				t.Errorf("head.Seq = %d, want %d", head.Seq, tt.wantSeq)
			}
			if tt.wantSeq == 0 && !bytes.Equal(head.Hash, GenesisHash()) {
				t.Errorf("empty head hash = %x, want genesis", head.Hash)
			}
		})
	}
}

func TestNext(t *testing.T) {
	t.Parallel()
	loc := time.FixedZone("X", 3600)
	e1 := Event{Time: time.Date(2026, 1, 2, 3, 4, 5, 6, loc), Actor: "cli", Action: "key.generated", Target: "k1"}
	head := Next(Head{}, &e1)
	if e1.Seq != 1 || head.Seq != 1 {
		t.Errorf("Seq = %d, head %d; want 1", e1.Seq, head.Seq)
	}
	if !bytes.Equal(e1.PrevHash, GenesisHash()) {
		t.Errorf("PrevHash = %x, want genesis", e1.PrevHash)
	}
	if e1.Time.Location() != time.UTC {
		t.Errorf("Time location = %v, want UTC", e1.Time.Location())
	}
	if want := ComputeHash(GenesisHash(), &e1); !bytes.Equal(e1.Hash, want) || len(e1.Hash) != 32 {
		t.Errorf("Hash = %x, want %x", e1.Hash, want)
	}
	head.Hash[0] ^= 0xff // the head must not alias the event
	if bytes.Equal(head.Hash, e1.Hash) {
		t.Error("Head.Hash aliases Event.Hash")
	}
	head.Hash[0] ^= 0xff

	e2 := Event{Time: testStart, Actor: "system", Action: "cert.issued"}
	head = Next(head, &e2)
	if e2.Seq != 2 || !bytes.Equal(e2.PrevHash, e1.Hash) {
		t.Errorf("event 2: Seq %d PrevHash %x, want 2 %x", e2.Seq, e2.PrevHash, e1.Hash)
	}
	if _, err := VerifyAll([]Event{e1, e2}, nil, nil); err != nil {
		t.Errorf("VerifyAll: %v", err)
	}

	g := GenesisHash()
	g[0] = 1
	if GenesisHash()[0] != 0 {
		t.Error("GenesisHash returns a shared slice")
	}
}

func TestCanonical(t *testing.T) {
	t.Parallel()
	base := Event{Seq: 7, Time: testStart, Actor: "a", Action: "b", Target: "c"}
	with := func(f func(e *Event)) Event {
		e := base
		f(&e)
		return e
	}
	tests := []struct {
		name      string
		a, b      Event
		wantEqual bool
	}{
		{
			name: "actor/action boundary",
			a:    with(func(e *Event) { e.Actor, e.Action = "ab", "c" }),
			b:    with(func(e *Event) { e.Actor, e.Action = "a", "bc" }),
		},
		{
			name: "action/target boundary",
			a:    with(func(e *Event) { e.Action, e.Target = "cert.", "issued" }),
			b:    with(func(e *Event) { e.Action, e.Target = "cert", ".issued" }),
		},
		{
			name: "field moved between actor and target",
			a:    with(func(e *Event) { e.Actor, e.Target = "x", "" }),
			b:    with(func(e *Event) { e.Actor, e.Target = "", "x" }),
		},
		{
			name: "detail key/value boundary",
			a:    with(func(e *Event) { e.Detail = map[string]string{"a": "b=c"} }),
			b:    with(func(e *Event) { e.Detail = map[string]string{"a=b": "c"} }),
		},
		{
			name: "detail pair boundary",
			a:    with(func(e *Event) { e.Detail = map[string]string{"a": "b", "c": "d"} }),
			b:    with(func(e *Event) { e.Detail = map[string]string{"a": "b\x01\x01c\x01d"} }),
		},
		{
			name: "target vs detail",
			a:    with(func(e *Event) { e.Target, e.Detail = "", map[string]string{"": ""} }),
			b:    with(func(e *Event) { e.Target, e.Detail = "\x01\x00\x00", nil }),
		},
		{
			name: "empty detail entry vs none",
			a:    with(func(e *Event) { e.Detail = map[string]string{"": ""} }),
			b:    with(func(e *Event) { e.Detail = nil }),
		},
		{
			name: "seq",
			a:    with(func(e *Event) { e.Seq = 1 }),
			b:    with(func(e *Event) { e.Seq = 256 }),
		},
		{
			name: "time nanosecond",
			a:    base,
			b:    with(func(e *Event) { e.Time = e.Time.Add(time.Nanosecond) }),
		},
		{
			name:      "time one second before epoch",
			a:         with(func(e *Event) { e.Time = time.Unix(-1, 0) }),
			b:         with(func(e *Event) { e.Time = time.Unix(0, -1e9) }),
			wantEqual: true,
		},
		{
			name:      "nil vs empty detail",
			a:         with(func(e *Event) { e.Detail = nil }),
			b:         with(func(e *Event) { e.Detail = map[string]string{} }),
			wantEqual: true,
		},
		{
			name:      "same instant, other zone",
			a:         base,
			b:         with(func(e *Event) { e.Time = e.Time.In(time.FixedZone("EST", -5*3600)) }),
			wantEqual: true,
		},
		{
			name:      "hash fields not encoded",
			a:         base,
			b:         with(func(e *Event) { e.PrevHash, e.Hash = []byte{1}, []byte{2} }),
			wantEqual: true,
		},
		{
			name: "detail insertion order",
			a: with(func(e *Event) {
				e.Detail = map[string]string{}
				for _, k := range []string{"z", "a", "m", "b"} {
					e.Detail[k] = k + "!"
				}
			}),
			b: with(func(e *Event) {
				e.Detail = map[string]string{}
				for _, k := range []string{"b", "m", "a", "z"} {
					e.Detail[k] = k + "!"
				}
			}),
			wantEqual: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ca, cb := tt.a.Canonical(), tt.b.Canonical()
			if got := bytes.Equal(ca, cb); got != tt.wantEqual {
				t.Errorf("Canonical equal = %v, want %v\n a: %x\n b: %x", got, tt.wantEqual, ca, cb)
			}
			ha, hb := ComputeHash(GenesisHash(), &tt.a), ComputeHash(GenesisHash(), &tt.b)
			if got := bytes.Equal(ha, hb); got != tt.wantEqual {
				t.Errorf("hash equal = %v, want %v", got, tt.wantEqual)
			}
		})
	}
}

// TestCanonicalGolden pins the encoding: changing it breaks every stored chain.
func TestCanonicalGolden(t *testing.T) {
	t.Parallel()
	e := Event{
		Seq:    1,
		Time:   time.Unix(1, 2).UTC(),
		Actor:  "cli",
		Action: "x",
		Detail: map[string]string{"k": "v"},
	}
	want := []byte{
		0x01,
		0, 0, 0, 0, 0, 0, 0, 1, // seq
		0, 0, 0, 0, 0, 0, 0, 1, // seconds
		0, 0, 0, 2, // nanoseconds
		3, 'c', 'l', 'i',
		1, 'x',
		0, // target
		1, // detail count
		1, 'k', 1, 'v',
	}
	if got := e.Canonical(); !bytes.Equal(got, want) {
		t.Errorf("Canonical() = %x, want %x", got, want)
	}
}

func TestCheckpoint(t *testing.T) {
	t.Parallel()
	ed, ec := newTestKeys(t)
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	events := buildEvents(3)
	head := Head{Seq: 3, Hash: events[2].Hash}
	signers := []struct {
		name string
		key  crypto.Signer
	}{
		{"ed25519", ed},
		{"ecdsa-p256", ec},
		{"rsa-2048", rk},
	}
	for _, s := range signers {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.FixedZone("X", 7200))
			c, err := SignCheckpoint(rand.Reader, s.key, "k1", head, now)
			if err != nil {
				t.Fatalf("SignCheckpoint: %v", err)
			}
			if c.Seq != 3 || !bytes.Equal(c.Hash, head.Hash) || c.KeyID != "k1" || !c.Time.Equal(now) || c.Time.Location() != time.UTC {
				t.Errorf("checkpoint = %+v", c)
			}
			if err := VerifyCheckpoint(s.key.Public(), c); err != nil {
				t.Errorf("VerifyCheckpoint: %v", err)
			}
			if _, err := VerifyAll(events, []Checkpoint{c}, map[string]crypto.PublicKey{"k1": s.key.Public()}); err != nil {
				t.Errorf("VerifyAll: %v", err)
			}
			tampered := []struct {
				name string
				f    func(c *Checkpoint)
			}{
				{"seq", func(c *Checkpoint) { c.Seq++ }},
				{"hash", func(c *Checkpoint) { c.Hash = slices.Clone(c.Hash); c.Hash[31] ^= 1 }},
				{"time", func(c *Checkpoint) { c.Time = c.Time.Add(time.Nanosecond) }},
				{"key id", func(c *Checkpoint) { c.KeyID = "k2" }},
				{"signature", func(c *Checkpoint) { c.Signature = slices.Clone(c.Signature); c.Signature[len(c.Signature)-1] ^= 1 }},
				{"no signature", func(c *Checkpoint) { c.Signature = nil }},
			}
			for _, tt := range tampered {
				bad := c
				tt.f(&bad)
				if err := VerifyCheckpoint(s.key.Public(), bad); err == nil {
					t.Errorf("VerifyCheckpoint with altered %s succeeded", tt.name)
				}
			}
			if err := VerifyCheckpoint(ed.Public().(ed25519.PublicKey)[:5], c); err == nil {
				t.Error("VerifyCheckpoint with a short Ed25519 key succeeded")
			}
		})
	}

	t.Run("errors", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			name   string
			signer crypto.Signer
			keyID  string
			head   Head
		}{
			{"nil signer", nil, "k", head},
			{"empty key id", ed, "", head},
			{"negative seq", ed, "k", Head{Seq: -1, Hash: head.Hash}},
			{"short hash", ed, "k", Head{Seq: 3, Hash: head.Hash[:31]}},
			{"missing hash", ed, "k", Head{Seq: 3}},
		}
		for _, tt := range tests {
			if _, err := SignCheckpoint(rand.Reader, tt.signer, tt.keyID, tt.head, testStart); err == nil {
				t.Errorf("%s: SignCheckpoint succeeded", tt.name)
			}
		}
		c, err := SignCheckpoint(rand.Reader, ed, "k", head, testStart)
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyCheckpoint("not a key", c); err == nil {
			t.Error("VerifyCheckpoint with an unsupported key type succeeded")
		}
	})

	t.Run("signed bytes", func(t *testing.T) {
		t.Parallel()
		c := Checkpoint{Seq: 1, Hash: GenesisHash(), Time: testStart, KeyID: "k", Signature: []byte("sig")}
		b := c.SignedBytes()
		if !bytes.HasPrefix(b, []byte("sigil-audit-checkpoint-v1\n")) {
			t.Errorf("SignedBytes() = %q, want the domain prefix", b)
		}
		other := c
		other.Signature = []byte("other")
		other.Time = testStart.In(time.FixedZone("X", 3600))
		if !bytes.Equal(b, other.SignedBytes()) {
			t.Error("SignedBytes depends on Signature or time zone")
		}
	})
}
