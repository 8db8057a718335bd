package revocation

import (
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/sigil-ca/sigil/store"
)

// Extension OIDs (RFC 5280 §5.2, §5.3), DER-encoded contents.
const (
	oidAuthorityKeyID = "\x55\x1d\x23" // 2.5.29.35
	oidCRLNumber      = "\x55\x1d\x14" // 2.5.29.20
	oidIssuingDP      = "\x55\x1d\x1c" // 2.5.29.28
	oidReasonCode     = "\x55\x1d\x15" // 2.5.29.21
	oidInvalidityDate = "\x55\x1d\x18" // 2.5.29.24

	reasonUnspecified  = 0
	maxEntrySerialSize = 20 // RFC 5280 §4.1.2.2: serials are at most 20 octets
)

// tbsHead is what a TBSCertList says besides its entries.
type tbsHead struct {
	sigAlg     []byte // DER AlgorithmIdentifier
	issuer     []byte // DER Name
	thisUpdate time.Time
	nextUpdate time.Time
	number     int64
	aki        []byte // the issuer's subject key identifier
	idpURI     string // "" for a complete CRL without an issuing distribution point
}

// tbsBuilder encodes a TBSCertList from a stream of revoked entries into
// one buffer, and then the signed CertificateList around it. The fields
// before the entries are encoded first and their final headers, whose
// lengths depend on the entries, are written into room left at the front of
// the buffer once they are all in: the entries are never copied, so a CRL
// costs its own DER and little more while it is built (RFC 5280 §5.1).
type tbsBuilder struct {
	buf    []byte // room, then the entries as they are added
	room   int    // bytes reserved before the entries
	start  int    // where the TBS begins, once finished
	fields []byte // version .. nextUpdate
	exts   []byte // [0] crlExtensions
	n      int
	entry  []byte // scratch for one entry
	ext    []byte // scratch for one entry's extensions
}

// newTBSBuilder encodes h's fields and reserves sizeHint bytes for the
// entries (growing past it if needed).
func newTBSBuilder(h tbsHead, sizeHint int) (*tbsBuilder, error) {
	fields := cryptobyte.NewBuilder(nil)
	fields.AddASN1Int64(1) // v2
	fields.AddBytes(h.sigAlg)
	fields.AddBytes(h.issuer)
	addTime(fields, h.thisUpdate)
	addTime(fields, h.nextUpdate)
	f, err := fields.Bytes()
	if err != nil {
		return nil, fmt.Errorf("encode crl fields: %w", err)
	}
	exts := cryptobyte.NewBuilder(nil)
	exts.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			addExtension(b, oidAuthorityKeyID, false, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(h.aki) })
				})
			})
			addExtension(b, oidCRLNumber, false, func(b *cryptobyte.Builder) { b.AddASN1Int64(h.number) })
			if h.idpURI != "" {
				// RFC 5280 §5.2.5: critical; distributionPoint fullName is
				// the URI certificates of this shard carry as their CDP.
				addExtension(b, oidIssuingDP, true, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
							b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
								b.AddASN1(cbasn1.Tag(6).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(h.idpURI)) })
							})
						})
						b.AddASN1(cbasn1.Tag(1).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddUint8(0xff) })
					})
				})
			}
		})
	})
	e, err := exts.Bytes()
	if err != nil {
		return nil, fmt.Errorf("encode crl extensions: %w", err)
	}
	// Three SEQUENCE headers (the CertificateList, the TBS and the entries)
	// of at most maxHeaderLen octets each precede the entries besides the
	// fields; the signature algorithm and value follow the extensions.
	room := len(f) + 3*maxHeaderLen
	buf := make([]byte, room, room+max(sizeHint, 0)+len(e)+maxSignatureLen)
	return &tbsBuilder{buf: buf, room: room, fields: f, exts: e,
		entry: make([]byte, 0, 128), ext: make([]byte, 0, 64)}, nil
}

// maxHeaderLen is the longest tag and length this encoder writes: one tag
// octet, 0x84 and four length octets.
const maxHeaderLen = 6

// maxSignatureLen is room for a signatureAlgorithm and signature value:
// RSA-4096 with PSS parameters fits with a margin. More only costs a copy.
const maxSignatureLen = 1024

// add appends one entry: serial, revocation date and, as entry extensions,
// the reason code (omitted for unspecified, RFC 5280 §5.3.1) and the
// invalidity date (RFC 5280 §5.3.2, always GeneralizedTime). Entries are
// encoded by hand: every length in them is under 128, and this runs once per
// revoked certificate.
func (t *tbsBuilder) add(r store.RevokedEntry) error {
	if len(r.Serial)+1 > 2*(maxEntrySerialSize+1) || r.Serial == "" {
		return fmt.Errorf("serial %q: bad length", r.Serial)
	}
	// Decode hex into a positive DER INTEGER body: a leading 0x00 when the
	// top bit is set, no other leading zeros.
	var raw [maxEntrySerialSize + 2]byte
	s := r.Serial
	n := (len(s) + 1) / 2
	body := raw[:1+n]
	if len(s)%2 == 1 {
		if _, err := hex.Decode(body[1:], []byte("0"+s)); err != nil {
			return fmt.Errorf("serial %q: %w", r.Serial, err)
		}
	} else if _, err := hex.Decode(body[1:], []byte(s)); err != nil {
		return fmt.Errorf("serial %q: %w", r.Serial, err)
	}
	for len(body) > 1 && body[0] == 0 && body[1]&0x80 == 0 {
		body = body[1:]
	}
	e := append(t.entry[:0], 0x02, byte(len(body)))
	e = append(e, body...)
	var err error
	if e, err = appendTime(e, r.RevokedAt); err != nil {
		return fmt.Errorf("serial %s: revocation date: %w", r.Serial, err)
	}
	if r.Reason != reasonUnspecified || !r.InvalidityDate.IsZero() {
		x := t.ext[:0]
		if r.Reason != reasonUnspecified {
			if r.Reason < 0 || r.Reason > 10 {
				return fmt.Errorf("serial %s: reason %d out of range", r.Serial, r.Reason)
			}
			// Extension { reasonCode, OCTET STRING { ENUMERATED } }
			x = append(x, 0x30, 10, 0x06, 3)
			x = append(x, oidReasonCode...)
			x = append(x, 0x04, 3, 0x0a, 1, byte(r.Reason))
		}
		if !r.InvalidityDate.IsZero() {
			// Extension { invalidityDate, OCTET STRING { GeneralizedTime } }
			x = append(x, 0x30, 24, 0x06, 3)
			x = append(x, oidInvalidityDate...)
			x = append(x, 0x04, 17, 0x18, 15)
			x = r.InvalidityDate.UTC().AppendFormat(x, "20060102150405")
			x = append(x, 'Z')
		}
		e = append(e, 0x30, byte(len(x)))
		e = append(e, x...)
		t.ext = x
	}
	t.entry = e
	t.buf = append(t.buf, 0x30, byte(len(e)))
	t.buf = append(t.buf, e...)
	t.n++
	return nil
}

// entries returns the entries added so far (for tests).
func (t *tbsBuilder) entries() []byte { return t.buf[t.room:] }

// finish returns the DER TBSCertList, in the builder's buffer: it stays
// valid until certificateList, and must not be modified.
func (t *tbsBuilder) finish() ([]byte, error) {
	entries := len(t.buf) - t.room
	// RFC 5280 §5.1.2.6: revokedCertificates is absent, not empty, when
	// nothing is revoked.
	var entriesHead []byte
	if entries > 0 {
		entriesHead = appendHeader(nil, 0x30, entries)
	}
	content := len(t.fields) + len(entriesHead) + entries + len(t.exts)
	if content > maxDERLen {
		return nil, fmt.Errorf("encode crl: %d octets is too long", content)
	}
	prefix := appendHeader(nil, 0x30, content)
	prefix = append(prefix, t.fields...)
	prefix = append(prefix, entriesHead...)
	if len(prefix) > t.room-maxHeaderLen {
		return nil, errors.New("encode crl: header longer than the room reserved for it")
	}
	t.start = t.room - len(prefix)
	copy(t.buf[t.start:], prefix)
	t.buf = append(t.buf, t.exts...)
	return t.buf[t.start:], nil
}

// certificateList returns the CertificateList (RFC 5280 §5.1.1) of the TBS
// that finish returned, signed with algID and sig, assembled around it in
// place. The builder must not be used after.
func (t *tbsBuilder) certificateList(algID, sig []byte) ([]byte, error) {
	tbs := len(t.buf) - t.start
	bitString := appendHeader(nil, 0x03, len(sig)+1)
	content := tbs + len(algID) + len(bitString) + 1 + len(sig)
	if content > maxDERLen {
		return nil, fmt.Errorf("encode crl: %d octets is too long", content)
	}
	head := appendHeader(nil, 0x30, content)
	start := t.start - len(head)
	copy(t.buf[start:], head)
	out := append(t.buf[start:], algID...)
	out = append(out, bitString...)
	out = append(out, 0) // no unused bits
	out = append(out, sig...)
	t.buf = nil
	return out, nil
}

// maxDERLen is the longest content appendHeader encodes.
const maxDERLen = 1<<32 - 1

// appendHeader appends a DER tag and definite length.
func appendHeader(dst []byte, tag byte, n int) []byte {
	dst = append(dst, tag)
	switch {
	case n < 0x80:
		return append(dst, byte(n))
	case n <= 0xff:
		return append(dst, 0x81, byte(n))
	case n <= 0xffff:
		return append(dst, 0x82, byte(n>>8), byte(n))
	case n <= 0xffffff:
		return append(dst, 0x83, byte(n>>16), byte(n>>8), byte(n))
	default:
		return append(dst, 0x84, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

// appendTime appends t as a DER Time, like addTime.
func appendTime(dst []byte, t time.Time) ([]byte, error) {
	t = t.UTC().Truncate(time.Second)
	switch y := t.Year(); {
	case y >= 1950 && y < 2050:
		dst = append(dst, 0x17, 13)
		dst = t.AppendFormat(dst, "060102150405")
	case y >= 0 && y <= 9999:
		dst = append(dst, 0x18, 15)
		dst = t.AppendFormat(dst, "20060102150405")
	default:
		return nil, fmt.Errorf("year %d cannot be encoded", y)
	}
	return append(dst, 'Z'), nil
}

// addExtension appends Extension ::= SEQUENCE { extnID, critical DEFAULT
// FALSE, extnValue OCTET STRING }; DER omits critical when false.
func addExtension(b *cryptobyte.Builder, oid string, critical bool, value cryptobyte.BuilderContinuation) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.OBJECT_IDENTIFIER, func(b *cryptobyte.Builder) { b.AddBytes([]byte(oid)) })
		if critical {
			b.AddASN1Boolean(true)
		}
		b.AddASN1(cbasn1.OCTET_STRING, value)
	})
}

// addTime appends a Time: UTCTime through 2049, GeneralizedTime from 2050
// (RFC 5280 §5.1.2.4), in whole seconds.
func addTime(b *cryptobyte.Builder, t time.Time) {
	t = t.UTC().Truncate(time.Second)
	if t.Year() >= 1950 && t.Year() < 2050 {
		b.AddASN1UTCTime(t)
		return
	}
	b.AddASN1GeneralizedTime(t)
}
