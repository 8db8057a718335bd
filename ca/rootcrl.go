package ca

import (
	"cmp"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/store"
)

// Validity bounds of the root's CRL. The root key is offline (DESIGN.md,
// Keys), so its CRL is re-signed by hand and rarely: by default a year
// between signings, which is also the most allowed: the CA/Browser Forum
// caps nextUpdate of CRLs about CA certificates at twelve months after
// thisUpdate (Baseline Requirements §4.9.7, now §7.2), and 365 days never
// exceed twelve months.
const (
	DefaultRootCRLValidity = 365 * 24 * time.Hour
	MaxRootCRLValidity     = DefaultRootCRLValidity
	MinRootCRLValidity     = time.Hour
)

// oidInvalidityDate is the invalidityDate CRL entry extension (RFC 5280 §5.3.2).
var oidInvalidityDate = asn1.ObjectIdentifier{2, 5, 29, 24}

// RootCRLStore is what SignRootCRL reads and writes.
type RootCRLStore interface {
	WithTx(ctx context.Context, fn func(tx store.Tx) error) error
	Issuers(ctx context.Context) ([]store.IssuerRecord, error)
	Certificates(ctx context.Context, f store.CertFilter) ([]store.CertRecord, store.CertCursor, error)
	CRLHead(ctx context.Context, issuerID string, shard int) (store.CRLHead, error)
}

// RootCRLConfig configures SignRootCRL.
type RootCRLConfig struct {
	// Validity is nextUpdate - thisUpdate (0: DefaultRootCRLValidity); from
	// MinRootCRLValidity to MaxRootCRLValidity.
	Validity time.Duration
	// Actor is who asks, recorded in the audit events (default "cli").
	Actor string
	Clock clockwork.Clock
}

// RootCRL is a CRL signed by the root and stored.
type RootCRL struct {
	Record store.CRLRecord
	// Revoked lists the serials it lists, lower-case hex, ascending.
	Revoked []string
}

// SignRootCRL unwraps the active root's key, signs the root's next CRL with
// it and drops the key (zeroed, see keystore.Zero) before anything is
// stored; the key never leaves this function. The CRL is v2, numbered one
// above the root's stored CRL, thisUpdate now, with the root's SKI as
// authority key identifier, and lists every certificate the root issued
// (intermediates, the audit signer) that is revoked, with its reason and
// invalidity date. It is stored in crl_state (shard 0) with its crl.published
// audit event in one transaction; unwrapping the key is audited on its own
// (key.unwrapped). A CRL numbered as high stored meanwhile is a Conflict.
func SignRootCRL(ctx context.Context, st RootCRLStore, keys KeyUnwrapper, cfg RootCRLConfig) (*RootCRL, error) {
	if cfg.Clock == nil {
		return nil, errors.New("root crl: no clock")
	}
	validity, err := rootCRLValidity(cfg.Validity)
	if err != nil {
		return nil, err
	}
	actor := cmp.Or(cfg.Actor, "cli")
	rootRec, root, err := activeRoot(ctx, st)
	if err != nil {
		return nil, err
	}
	prev, err := st.CRLHead(ctx, rootRec.ID, 0)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, internal("root crl: load the stored crl", err)
	}
	revoked, err := rootRevocations(ctx, st, rootRec.ID, root)
	if err != nil {
		return nil, err
	}
	// Everything is read before the key is unwrapped, and the key is gone
	// before the transaction: it is in memory for the signature only.
	rec, err := func() (store.CRLRecord, error) {
		signer, err := keys.Unwrap(ctx, rootRec.KeyID, actor)
		if err != nil {
			return store.CRLRecord{}, internal("root crl: unwrap the root key", err)
		}
		defer keystore.Zero(signer)
		return signRootCRL(root, rootRec.ID, signer, prev.Number+1, cfg.Clock.Now(), validity, revoked)
	}()
	if err != nil {
		return nil, err
	}
	err = update(ctx, st, func(tx Tx) error { return putRootCRL(tx, rec, len(revoked), actor) })
	if errors.Is(err, store.ErrDuplicate) {
		return nil, errorf(Conflict, "a root CRL numbered %d or higher was stored meanwhile; sign again", rec.Number)
	}
	if err != nil {
		return nil, internal("root crl: store", err)
	}
	out := &RootCRL{Record: rec}
	for _, r := range revoked {
		out.Revoked = append(out.Revoked, r.Serial)
	}
	return out, nil
}

func rootCRLValidity(d time.Duration) (time.Duration, error) {
	if d == 0 {
		return DefaultRootCRLValidity, nil
	}
	if d < MinRootCRLValidity || d > MaxRootCRLValidity {
		return 0, errorf(Malformed, "root CRL validity %s: want %s to %s", d, MinRootCRLValidity, MaxRootCRLValidity)
	}
	return d, nil
}

// activeRoot returns the record and certificate of the active root.
func activeRoot(ctx context.Context, st interface {
	Issuers(ctx context.Context) ([]store.IssuerRecord, error)
}) (store.IssuerRecord, *x509.Certificate, error) {
	issuers, err := st.Issuers(ctx)
	if err != nil {
		return store.IssuerRecord{}, nil, internal("load issuers", err)
	}
	return rootOf(issuers)
}

// rootOf finds the active root among issuers (oldest first).
func rootOf(issuers []store.IssuerRecord) (store.IssuerRecord, *x509.Certificate, error) {
	for i := len(issuers) - 1; i >= 0; i-- { // oldest first: the newest active wins
		if rec := issuers[i]; rec.Kind == "root" && rec.State == store.KeyActive {
			iss, err := parseIssuer(rec)
			if err != nil {
				return store.IssuerRecord{}, nil, internal("root", err)
			}
			return rec, iss.Cert, nil
		}
	}
	return store.IssuerRecord{}, nil, errorf(NotFound, "no active root: run sigil init first")
}

// rootRevocations lists the revoked certificates the root issued, by
// serial. The root's own record (self-issued) is not one: a relying party
// trusts or distrusts a root directly, never through its CRL (RFC 5280 §6.1).
func rootRevocations(ctx context.Context, st RootCRLStore, rootID string, root *x509.Certificate) ([]store.CertRecord, error) {
	var out []store.CertRecord
	err := eachCertificate(ctx, st, store.CertFilter{IssuerID: rootID, Status: "revoked"}, func(r store.CertRecord) {
		if r.Serial != SerialString(root.SerialNumber) {
			out = append(out, r)
		}
	})
	if err != nil {
		return nil, internal("root crl: list revoked certificates", err)
	}
	slices.SortFunc(out, func(a, b store.CertRecord) int { return cmp.Compare(a.Serial, b.Serial) })
	return out, nil
}

// signRootCRL builds and signs the root's CRL number with signer, which
// must be the root's key, and checks the signature before returning it.
func signRootCRL(root *x509.Certificate, rootID string, signer crypto.Signer, number int64, now time.Time, validity time.Duration, revoked []store.CertRecord) (store.CRLRecord, error) {
	entries := make([]x509.RevocationListEntry, 0, len(revoked))
	for _, r := range revoked {
		serial, ok := new(big.Int).SetString(r.Serial, 16)
		if !ok {
			return store.CRLRecord{}, internal("root crl", fmt.Errorf("certificate record has a malformed serial %q", r.Serial))
		}
		// RFC 5280 §5.3.1: unspecified (0) is expressed by no reason code,
		// which is what x509 writes for 0.
		e := x509.RevocationListEntry{SerialNumber: serial, RevocationTime: r.RevokedAt.UTC(), ReasonCode: r.RevokeReason}
		if !r.InvalidityDate.IsZero() {
			v, err := asn1.MarshalWithParams(r.InvalidityDate.UTC(), "generalized")
			if err != nil {
				return store.CRLRecord{}, internal("root crl: invalidity date", err)
			}
			e.ExtraExtensions = []pkix.Extension{{Id: oidInvalidityDate, Value: v}}
		}
		entries = append(entries, e)
	}
	// CRLs carry whole seconds (RFC 5280 §5.1.2.4).
	thisUpdate := now.UTC().Truncate(time.Second)
	tmpl := &x509.RevocationList{
		Number:                    big.NewInt(number),
		ThisUpdate:                thisUpdate,
		NextUpdate:                thisUpdate.Add(validity),
		RevokedCertificateEntries: entries,
	}
	// x509 sets the AKI from root.SubjectKeyId and refuses an issuer
	// without cRLSign.
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, root, signer)
	if err != nil {
		return store.CRLRecord{}, internal("root crl: sign", err)
	}
	// As for certificates (tbsSigner): a faulty signer, or a key that is
	// not the root's, must never yield a CRL.
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return store.CRLRecord{}, internal("root crl: parse the signed crl", err)
	}
	if err := crl.CheckSignatureFrom(root); err != nil {
		return store.CRLRecord{}, internal("root crl: signature does not verify with the root certificate", err)
	}
	return store.CRLRecord{IssuerID: rootID, Shard: 0, Number: number, ThisUpdate: tmpl.ThisUpdate,
		NextUpdate: tmpl.NextUpdate, DER: der}, nil
}

// putRootCRL stores rec and appends its crl.published event, inside tx.
func putRootCRL(tx Tx, rec store.CRLRecord, entries int, actor string) error {
	if err := tx.PutCRL(rec); err != nil {
		return err
	}
	sum := sha256.Sum256(rec.DER)
	_, err := tx.AppendAudit(audit.Event{Time: rec.ThisUpdate, Actor: actor, Action: audit.ActionCRLPublished,
		Target: rec.IssuerID + "/" + strconv.Itoa(rec.Shard),
		Detail: map[string]string{
			"number": strconv.FormatInt(rec.Number, 10), "entries": strconv.Itoa(entries),
			"this_update": rec.ThisUpdate.Format(time.RFC3339), "next_update": rec.NextUpdate.Format(time.RFC3339),
			"sha256": hex.EncodeToString(sum[:]),
		}})
	return err
}
