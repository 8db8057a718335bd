package revocation

import (
	"encoding/hex"
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

// entryEncoder appends DER revokedCertificates entries (RFC 5280 §5.1) one at
// a time, so a CRL is built from a stream of rows: memory grows with the DER
// alone, a few dozen bytes per entry.
type entryEncoder struct {
	b      *cryptobyte.Builder
	n      int
	serial []byte // scratch for decoded serials
}

func newEntryEncoder(sizeHint int) *entryEncoder {
	return &entryEncoder{b: cryptobyte.NewBuilder(make([]byte, 0, sizeHint)), serial: make([]byte, 0, maxEntrySerialSize+1)}
}

// add appends one entry: serial, revocation date and, as entry extensions,
// the reason code (omitted for unspecified, RFC 5280 §5.3.1) and the
// invalidity date (RFC 5280 §5.3.2, always GeneralizedTime).
func (e *entryEncoder) add(r store.RevokedEntry) error {
	if len(r.Serial)+1 > 2*(maxEntrySerialSize+1) || r.Serial == "" {
		return fmt.Errorf("serial %q: bad length", r.Serial)
	}
	// Decode hex into a positive DER INTEGER body: a leading 0x00 when the
	// top bit is set, no other leading zeros.
	s := r.Serial
	if len(s)%2 == 1 {
		s = "0" + s
	}
	buf := e.serial[:1+len(s)/2]
	buf[0] = 0
	if _, err := hex.Decode(buf[1:], []byte(s)); err != nil {
		return fmt.Errorf("serial %q: %w", r.Serial, err)
	}
	for len(buf) > 1 && buf[0] == 0 && buf[1]&0x80 == 0 {
		buf = buf[1:]
	}
	e.b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.INTEGER, func(b *cryptobyte.Builder) { b.AddBytes(buf) })
		addTime(b, r.RevokedAt)
		if r.Reason == reasonUnspecified && r.InvalidityDate.IsZero() {
			return
		}
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			if r.Reason != reasonUnspecified {
				addExtension(b, oidReasonCode, false, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.ENUM, func(b *cryptobyte.Builder) { b.AddUint8(uint8(r.Reason)) })
				})
			}
			if !r.InvalidityDate.IsZero() {
				addExtension(b, oidInvalidityDate, false, func(b *cryptobyte.Builder) {
					b.AddASN1GeneralizedTime(r.InvalidityDate.UTC())
				})
			}
		})
	})
	e.n++
	return nil
}

// tbs returns the TBSCertList of head and the entries added so far.
func (e *entryEncoder) tbs(h tbsHead) ([]byte, error) {
	entries, err := e.b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("encode crl entries: %w", err)
	}
	e.b = nil // let the builder's buffer go once copied below
	out := cryptobyte.NewBuilder(make([]byte, 0, len(entries)+len(h.issuer)+512))
	out.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(1) // v2
		b.AddBytes(h.sigAlg)
		b.AddBytes(h.issuer)
		addTime(b, h.thisUpdate)
		addTime(b, h.nextUpdate)
		// RFC 5280 §5.1.2.6: absent, not empty, when nothing is revoked.
		if len(entries) > 0 {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddBytes(entries) })
		}
		b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
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
	})
	der, err := out.Bytes()
	if err != nil {
		return nil, fmt.Errorf("encode crl: %w", err)
	}
	return der, nil
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
