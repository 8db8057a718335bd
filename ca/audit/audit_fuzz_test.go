package audit

import (
	"bytes"
	"encoding/binary"
	"maps"
	"testing"
	"time"
)

// fuzzEvent builds an event from fuzz input: 8 bytes of Seq, 8 bytes of Unix
// seconds and 4 bytes of nanoseconds (short input is zero-padded), then
// 0x00-separated Actor, Action, Target and Detail key/value pairs (a trailing
// key gets an empty value, a repeated key keeps its last value). An absent or
// empty Detail section gives a nil map; the empty flag turns that into an
// empty non-nil map so nil and empty are both exercised.
func fuzzEvent(b []byte, empty bool) Event {
	var fixed [20]byte
	n := copy(fixed[:], b)
	e := Event{
		Seq:  int64(binary.BigEndian.Uint64(fixed[0:8])),
		Time: time.Unix(int64(binary.BigEndian.Uint64(fixed[8:16])), int64(binary.BigEndian.Uint32(fixed[16:20])%1e9)),
	}
	if empty {
		e.Detail = map[string]string{}
	}
	if n < len(fixed) {
		return e
	}
	fields := bytes.Split(b[len(fixed):], []byte{0})
	for i, f := range fields {
		switch i {
		case 0:
			e.Actor = string(f)
		case 1:
			e.Action = string(f)
		case 2:
			e.Target = string(f)
		default:
			if (i-3)%2 == 1 {
				continue // value, read with its key
			}
			if e.Detail == nil {
				e.Detail = map[string]string{}
			}
			v := ""
			if i+1 < len(fields) {
				v = string(fields[i+1])
			}
			e.Detail[string(f)] = v
		}
	}
	return e
}

// sameFields reports whether a and b agree on every field Canonical covers.
func sameFields(a, b Event) bool {
	return a.Seq == b.Seq && a.Time.Equal(b.Time) && a.Actor == b.Actor &&
		a.Action == b.Action && a.Target == b.Target && maps.Equal(a.Detail, b.Detail)
}

// fuzzSeed encodes an event in fuzzEvent's input format.
func fuzzSeed(seq int64, sec int64, nsec uint32, fields ...string) []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(seq))
	b = binary.BigEndian.AppendUint64(b, uint64(sec))
	b = binary.BigEndian.AppendUint32(b, nsec)
	for i, f := range fields {
		if i > 0 {
			b = append(b, 0)
		}
		b = append(b, f...)
	}
	return b
}

// FuzzCanonical checks that Canonical is deterministic and injective: two
// events built from fuzz input encode identically exactly when their fields
// are equal, and likewise for their hashes.
func FuzzCanonical(f *testing.F) {
	const sec = 1772366400
	f.Add(fuzzSeed(1, sec, 0, "ab", "c", ""), fuzzSeed(1, sec, 0, "a", "bc", ""), false, false)
	f.Add(fuzzSeed(2, sec, 5, "cli", "x", "t", "a", "b=c"), fuzzSeed(2, sec, 5, "cli", "x", "t", "a=b", "c"), false, false)
	f.Add(fuzzSeed(3, sec, 0, "s", "a", "t"), fuzzSeed(3, sec, 0, "s", "a", "t"), false, true)
	f.Add(fuzzSeed(4, sec, 0, "s", "a", "t", "k", "v", "k2", "v2"), fuzzSeed(4, sec, 0, "s", "a", "t", "k2", "v2", "k", "v"), false, false)
	f.Add(fuzzSeed(5, -1, 999999999, "", "", "", "", ""), fuzzSeed(5, -1, 999999999, "", "", "\x01\x00\x00"), true, false)
	f.Add(fuzzSeed(-1, 0, 0, "system"), fuzzSeed(1<<62, 0, 0, "system"), false, false)
	f.Add([]byte{}, []byte{0}, false, true)
	f.Fuzz(func(t *testing.T, a, b []byte, emptyA, emptyB bool) {
		ea, eb := fuzzEvent(a, emptyA), fuzzEvent(b, emptyB)
		ca, cb := ea.Canonical(), eb.Canonical()

		// Deterministic: again, and on a copy with a fresh map.
		again := ea
		again.Detail = maps.Clone(ea.Detail)
		if !bytes.Equal(ca, again.Canonical()) || !bytes.Equal(ca, ea.Canonical()) {
			t.Fatalf("Canonical not deterministic for %+v", ea)
		}
		if ca[0] != canonicalVersion {
			t.Fatalf("Canonical starts with %#x, want version %#x", ca[0], canonicalVersion)
		}

		same := sameFields(ea, eb)
		if got := bytes.Equal(ca, cb); got != same {
			t.Fatalf("Canonical equal = %v, fields equal = %v\n a: %+v\n b: %+v\n ca: %x\n cb: %x", got, same, ea, eb, ca, cb)
		}
		prev := GenesisHash()
		if got := bytes.Equal(ComputeHash(prev, &ea), ComputeHash(prev, &eb)); got != same {
			t.Fatalf("hash equal = %v, fields equal = %v", got, same)
		}
	})
}
