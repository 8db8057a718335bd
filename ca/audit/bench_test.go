package audit

import (
	"crypto"
	"crypto/rand"
	"testing"
)

// BenchmarkVerify verifies a 10,000-event chain checkpointed every 1,000
// events with Ed25519 and reports the verification rate.
func BenchmarkVerify(b *testing.B) {
	const n = 10_000
	events := buildEvents(n)
	ed, _ := newTestKeys(b)
	keys := map[string]crypto.PublicKey{"ed": ed.Public()}
	var cps []Checkpoint
	for seq := 1000; seq <= n; seq += 1000 {
		e := events[seq-1]
		c, err := SignCheckpoint(rand.Reader, ed, "ed", Head{Seq: e.Seq, Hash: e.Hash}, e.Time)
		if err != nil {
			b.Fatal(err)
		}
		cps = append(cps, c)
	}
	b.ReportAllocs()
	iters := 0
	for b.Loop() {
		head, err := VerifyAll(events, cps, keys)
		if err != nil || head.Seq != n {
			b.Fatalf("VerifyAll = %d, %v", head.Seq, err)
		}
		iters++
	}
	b.ReportMetric(float64(n*iters)/b.Elapsed().Seconds(), "events/s")
}
