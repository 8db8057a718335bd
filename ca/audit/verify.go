package audit

import (
	"bytes"
	"cmp"
	"crypto"
	"fmt"
	"slices"
)

// VerifyError names where the chain breaks. Seq is the first event that is
// missing, out of place or fails a check; Reason says what was found.
type VerifyError struct {
	Seq    int64
	Reason string
}

// Error returns a one-line description such as
// "audit chain broken at event 42: hash mismatch (event altered)".
func (e *VerifyError) Error() string {
	return fmt.Sprintf("audit chain broken at event %d: %s", e.Seq, e.Reason)
}

// Verifier checks a chain streamed in Seq order against a set of signed
// checkpoints. Feed every event to Add, then call Finish. The first failure is
// final: later calls return the same error. A Verifier is not safe for
// concurrent use.
type Verifier struct {
	keys map[string]crypto.PublicKey
	// checkpoints sorted by Seq (stable in input order); next indexes the
	// first one not yet checked.
	checkpoints []Checkpoint
	next        int

	start int64  // Seq of the event before the first one verified (0 from genesis)
	seq   int64  // last verified event, start before the first
	hash  []byte // Hash of event seq, the start hash before the first
	buf   []byte // scratch for canonical encodings
	err   *VerifyError
}

// NewVerifier returns a Verifier for a chain whose signed checkpoints are
// checkpoints, in any order, signed by keys (KeyID to public key). Neither
// argument is modified or retained beyond the copies it makes.
func NewVerifier(checkpoints []Checkpoint, keys map[string]crypto.PublicKey) *Verifier {
	return NewVerifierFrom(Head{}, checkpoints, keys)
}

// NewVerifierFrom is NewVerifier for a chain verified from the middle: the
// first event Add expects is start.Seq+1, linked to start.Hash. start is taken
// on trust, so whatever follows is authentic only up to the checkpoints that
// cover it. Checkpoints at or below start.Seq cannot be checked and are
// ignored (none are when start is the zero Head, which is NewVerifier). A
// start.Hash that is not HashSize bytes makes the first Add fail.
func NewVerifierFrom(start Head, checkpoints []Checkpoint, keys map[string]crypto.PublicKey) *Verifier {
	cps := slices.Clone(checkpoints)
	if start.Seq > 0 {
		cps = slices.DeleteFunc(cps, func(c Checkpoint) bool { return c.Seq <= start.Seq })
	}
	slices.SortStableFunc(cps, func(a, b Checkpoint) int { return cmp.Compare(a.Seq, b.Seq) })
	ks := make(map[string]crypto.PublicKey, len(keys))
	for id, k := range keys {
		ks[id] = k
	}
	v := &Verifier{keys: ks, checkpoints: cps, hash: GenesisHash()}
	if start.Seq > 0 {
		v.start, v.seq = start.Seq, start.Seq
		if len(start.Hash) != HashSize {
			v.err = &VerifyError{Seq: start.Seq + 1, Reason: fmt.Sprintf("start hash is %d bytes, want %d", len(start.Hash), HashSize)}
		}
		copy(v.hash, start.Hash)
	}
	return v
}

// Add verifies the next event. In order it checks that e.Seq is one more than
// the previous event's (1 for the first), that e.PrevHash equals the previous
// event's Hash (GenesisHash() for event 1), and that e.Hash equals
// ComputeHash(e.PrevHash, e); then, for each checkpoint at e.Seq, that its
// signature verifies under its key and its Hash equals e.Hash. On failure it
// returns a *VerifyError and every later Add or Finish returns that same error.
func (v *Verifier) Add(e Event) error {
	if v.err != nil {
		return v.err
	}
	want := v.seq + 1
	switch {
	case e.Seq > want:
		return v.fail(want, missingReason(want, e.Seq-1)+" (deleted?)")
	case e.Seq < want:
		return v.fail(want, fmt.Sprintf("expected event %d, found %d (rows out of order or duplicated)", want, e.Seq))
	}
	if !bytes.Equal(e.PrevHash, v.hash) {
		if want == 1 {
			return v.fail(want, "prev_hash is not the genesis hash (link broken)")
		}
		return v.fail(want, fmt.Sprintf("prev_hash does not match hash of event %d (link broken)", v.seq))
	}
	var sum [HashSize]byte
	sum, v.buf = computeHash(v.buf, v.hash, &e)
	if !bytes.Equal(e.Hash, sum[:]) {
		return v.fail(want, "hash mismatch (event altered)")
	}
	for ; v.next < len(v.checkpoints) && v.checkpoints[v.next].Seq <= e.Seq; v.next++ {
		c := v.checkpoints[v.next]
		if c.Seq < e.Seq {
			// Only checkpoints below 1 can be skipped this way: every
			// positive Seq up to e.Seq has been through Add.
			if err := v.checkEmpty(c); err != nil {
				return v.setErr(err)
			}
			continue
		}
		if err := v.checkSignature(c); err != nil {
			return v.setErr(err)
		}
		if !bytes.Equal(c.Hash, e.Hash) {
			return v.fail(e.Seq, fmt.Sprintf("checkpoint mismatch: event hash differs from the head signed by key %q (chain rewritten)", c.KeyID))
		}
	}
	v.seq = e.Seq
	copy(v.hash, sum[:]) // v.hash is always HashSize bytes and never shared
	return nil
}

// Finish ends verification after the last event and returns the head of the
// verified chain (Seq 0 and GenesisHash() if there were no events). A
// checkpoint past the last event means events were cut from the end of the
// log: the *VerifyError names the missing range. A checkpoint with a bad
// signature or an unknown key is an error wherever it points. A log with no
// checkpoints verifies on its chain alone. After a failure Finish returns the
// head of the last verified event and the first error. Finish does not change
// the Verifier; calling it again gives the same result.
func (v *Verifier) Finish() (Head, error) {
	head := v.head()
	if v.err != nil {
		return head, v.err
	}
	var (
		sigErr  *VerifyError // first bad pending checkpoint, by Seq
		covered int64        // highest authentic checkpoint past the end
	)
	for _, c := range v.checkpoints[v.next:] {
		var err *VerifyError
		if c.Seq <= v.seq {
			err = v.checkEmpty(c)
		} else if err = v.checkSignature(c); err == nil {
			covered = max(covered, c.Seq)
		}
		if err != nil && sigErr == nil {
			sigErr = err
		}
	}
	// Truncation outranks a bad checkpoint: an authentic checkpoint past the
	// end is proof that events existed and are gone.
	if covered > v.seq {
		return head, &VerifyError{
			Seq:    v.seq + 1,
			Reason: fmt.Sprintf("log ends at seq %d but checkpoint covers seq %d: %s", v.seq, covered, missingReason(v.seq+1, covered)),
		}
	}
	if sigErr != nil {
		return head, sigErr
	}
	return head, nil
}

// Count returns the number of events verified so far.
func (v *Verifier) Count() int64 {
	return v.seq - v.start
}

// head returns the position of the last verified event.
func (v *Verifier) head() Head {
	return Head{Seq: v.seq, Hash: slices.Clone(v.hash)}
}

// checkSignature checks that c is signed by the key its KeyID names.
func (v *Verifier) checkSignature(c Checkpoint) *VerifyError {
	pub, ok := v.keys[c.KeyID]
	if !ok {
		return &VerifyError{Seq: c.Seq, Reason: fmt.Sprintf("checkpoint signed by unknown key %q", c.KeyID)}
	}
	if err := VerifyCheckpoint(pub, c); err != nil {
		return &VerifyError{Seq: c.Seq, Reason: fmt.Sprintf("bad checkpoint signature (key %q): %v", c.KeyID, err)}
	}
	return nil
}

// checkEmpty checks a checkpoint at or below Seq 0, which can only describe
// the empty chain.
func (v *Verifier) checkEmpty(c Checkpoint) *VerifyError {
	if c.Seq < 0 {
		return &VerifyError{Seq: c.Seq, Reason: fmt.Sprintf("checkpoint has invalid seq %d", c.Seq)}
	}
	if err := v.checkSignature(c); err != nil {
		return err
	}
	if !bytes.Equal(c.Hash, GenesisHash()) {
		return &VerifyError{Seq: 0, Reason: fmt.Sprintf("checkpoint mismatch: empty-chain checkpoint signed by key %q has a non-genesis hash", c.KeyID)}
	}
	return nil
}

// fail records and returns the first error.
func (v *Verifier) fail(seq int64, reason string) error {
	return v.setErr(&VerifyError{Seq: seq, Reason: reason})
}

// setErr records err as the Verifier's final error and returns it.
func (v *Verifier) setErr(err *VerifyError) error {
	v.err = err
	return err
}

// missingReason describes the events from..to as missing.
func missingReason(from, to int64) string {
	if from == to {
		return fmt.Sprintf("event %d missing", from)
	}
	return fmt.Sprintf("events %d..%d missing", from, to)
}

// VerifyAll verifies a whole log held in memory, in Seq order, against
// checkpoints signed by keys, and returns the verified head. It is Add for
// each event followed by Finish, except that because it sees every event it
// can tell rows that are out of order from rows that were deleted: when the
// expected event appears later in events, the error says so.
func VerifyAll(events []Event, checkpoints []Checkpoint, keys map[string]crypto.PublicKey) (Head, error) {
	v := NewVerifier(checkpoints, keys)
	for i := range events {
		if err := v.Add(events[i]); err != nil {
			return v.head(), reorderError(err, events[i:])
		}
	}
	return v.Finish()
}

// reorderError turns a gap reported at rest[0] into an out-of-order error when
// the missing event turns up later in rest.
func reorderError(err error, rest []Event) error {
	ve, ok := err.(*VerifyError)
	if !ok || rest[0].Seq <= ve.Seq {
		return err // not a forward jump
	}
	for _, e := range rest[1:] {
		if e.Seq == ve.Seq {
			return &VerifyError{
				Seq:    ve.Seq,
				Reason: fmt.Sprintf("expected event %d, found %d (rows out of order)", ve.Seq, rest[0].Seq),
			}
		}
	}
	return err
}
