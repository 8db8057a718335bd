package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"maps"
	"slices"
	"time"
)

// canonicalVersion is the first byte of every canonical event encoding. A new
// encoding gets a new version so old chains keep verifying.
const canonicalVersion = 0x01

// HashSize is the length in bytes of every event hash, PrevHash and
// checkpoint hash (SHA-256).
const HashSize = sha256.Size

// Event is one audit record. Once appended, none of its fields may change:
// every field except Hash is covered by Hash, directly or through PrevHash.
type Event struct {
	Seq      int64             // 1-based, contiguous
	Time     time.Time         // stored UTC; canonical encoding uses UTC, nanosecond precision
	Actor    string            // e.g. "system", "token:ab12", "cli"
	Action   string            // e.g. "cert.issued", "request.refused", "key.generated"
	Target   string            // e.g. a serial or key id; may be empty
	Detail   map[string]string // may be nil; nil and empty map encode identically
	PrevHash []byte            // 32 bytes; GenesisHash() for Seq 1
	Hash     []byte            // 32 bytes
}

// Head is the position of the chain's last event. The zero Head is the empty
// chain: its next event is Seq 1 with PrevHash GenesisHash().
type Head struct {
	Seq  int64
	Hash []byte
}

// GenesisHash returns the PrevHash of event 1: 32 zero bytes, in a fresh slice
// each call so callers may keep or modify it.
func GenesisHash() []byte {
	return make([]byte, HashSize)
}

// Canonical returns the deterministic encoding of e that its hash covers:
// Seq, Time, Actor, Action, Target and Detail, but not PrevHash or Hash.
// Events whose fields are equal (Time compared as an instant, nil Detail equal
// to empty Detail) encode identically, and different events never do.
//
// Layout, version 1:
//
//	0x01
//	Seq                 8 bytes big-endian (two's complement)
//	Time seconds        8 bytes big-endian, seconds since the Unix epoch (UTC)
//	Time nanoseconds    4 bytes big-endian, 0..999999999
//	Actor, Action, Target, each as uvarint length ‖ bytes
//	len(Detail)         uvarint
//	Detail pairs        sorted by key (bytewise); key and value each as uvarint length ‖ bytes
//
// Time is split into seconds and nanoseconds rather than UnixNano so that
// every representable time encodes without overflow.
func (e *Event) Canonical() []byte {
	return e.appendCanonical(make([]byte, 0, e.canonicalSizeHint()))
}

// canonicalSizeHint estimates the encoded size so Canonical allocates once.
func (e *Event) canonicalSizeHint() int {
	n := 1 + 8 + 12 + 3*binary.MaxVarintLen64 + len(e.Actor) + len(e.Action) + len(e.Target) + binary.MaxVarintLen64
	for k, v := range e.Detail {
		n += 2*binary.MaxVarintLen64 + len(k) + len(v)
	}
	return n
}

// appendCanonical appends the canonical encoding of e to b.
func (e *Event) appendCanonical(b []byte) []byte {
	b = append(b, canonicalVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Seq))
	t := e.Time.UTC()
	b = binary.BigEndian.AppendUint64(b, uint64(t.Unix()))
	b = binary.BigEndian.AppendUint32(b, uint32(t.Nanosecond()))
	b = appendString(b, e.Actor)
	b = appendString(b, e.Action)
	b = appendString(b, e.Target)
	b = binary.AppendUvarint(b, uint64(len(e.Detail)))
	if len(e.Detail) > 0 {
		for _, k := range slices.Sorted(maps.Keys(e.Detail)) {
			b = appendString(b, k)
			b = appendString(b, e.Detail[k])
		}
	}
	return b
}

// appendString appends s prefixed by its length, which keeps adjacent fields
// from running into each other ("ab"+"c" versus "a"+"bc").
func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// ComputeHash returns SHA-256(prev ‖ e.Canonical()), the Hash that event e
// must carry when it follows an event whose Hash is prev. It ignores e.PrevHash
// and e.Hash.
func ComputeHash(prev []byte, e *Event) []byte {
	sum, _ := computeHash(nil, prev, e)
	return sum[:]
}

// computeHash is ComputeHash with a reusable scratch buffer: it returns the
// hash and buf, grown if needed, for the next call.
func computeHash(buf, prev []byte, e *Event) ([HashSize]byte, []byte) {
	buf = append(buf[:0], prev...)
	buf = e.appendCanonical(buf)
	return sha256.Sum256(buf), buf
}

// Next links e to the chain whose last event is head and returns the new head.
// It sets e.Seq to head.Seq+1, e.PrevHash to head.Hash (GenesisHash() when
// head.Seq is 0), e.Time to e.Time in UTC without a monotonic clock reading,
// and e.Hash; the other fields of e are hashed as they are. e.PrevHash and the
// returned Head.Hash are copies, so the caller may reuse head.Hash.
func Next(head Head, e *Event) Head {
	prev := GenesisHash()
	if head.Seq != 0 {
		prev = slices.Clone(head.Hash)
	}
	e.Seq = head.Seq + 1
	e.Time = e.Time.UTC().Round(0)
	e.PrevHash = prev
	e.Hash = ComputeHash(prev, e)
	return Head{Seq: e.Seq, Hash: slices.Clone(e.Hash)}
}
