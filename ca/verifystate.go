package ca

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

// Detail keys that let VerifyState compare records with the chain. Events
// written before they existed lack them; VerifyState then checks what they
// do carry and counts the rest as not covered.
const (
	detailDERSHA256       = "der_sha256"        // cert.issued: SHA-256 of the certificate DER
	detailSecretDigest    = "secret_sha256"     // token.created: SHA-256 of the stored secret hash
	detailPublicKeyDigest = "public_key_sha256" // key.generated: SHA-256 of the public key DER
)

// derDigest is the hex SHA-256 of b, as the detail keys above carry it.
func derDigest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// StateSource is what VerifyState reads: the chain and the records it
// describes.
type StateSource interface {
	ScanAudit(ctx context.Context, fn func(audit.Event) error) error
	ScanAllCertificates(ctx context.Context, fn func(store.CertRecord) error) error
	BlockedKeys(ctx context.Context) ([]store.BlockedKey, error)
	Tokens(ctx context.Context) ([]store.TokenRecord, error)
	Keys(ctx context.Context) ([]store.KeyRecord, error)
}

// StateReport counts what VerifyState compared.
type StateReport struct {
	Certificates int
	// DERChecked is how many certificates' DER was compared with a hash
	// their cert.issued event carries (older events carry none; the
	// transparency log check covers their DER).
	DERChecked  int
	BlockedKeys int
	Tokens      int
	Keys        int
}

// StateError lists every record that differs from what the audit chain says
// of it.
type StateError struct {
	Mismatches []string
}

// Error says how many records differ and names the first.
func (e *StateError) Error() string {
	if len(e.Mismatches) == 1 {
		return "state differs from the audit chain: " + e.Mismatches[0]
	}
	return fmt.Sprintf("state differs from the audit chain in %d places; first: %s", len(e.Mismatches), e.Mismatches[0])
}

// chainCert is what the chain says of one certificate.
type chainCert struct {
	serial     string
	seq        int64 // its cert.issued event
	der        string
	revoked    bool
	revokedAt  time.Time
	reason     string
	invalidity string
	seen       bool
}

type chainToken struct {
	seq                                          int64
	role, profiles, managed, expires, secretHash string
	revoked                                      time.Time
	seen                                         bool
}

type chainKey struct {
	seq                         int64
	state, purpose, algo, pubSH string
	seen                        bool
}

// VerifyState replays the audit chain of src into the state it describes and
// compares that with the records: each certificate's DER (where its
// cert.issued event carries a hash), revocation status, reason, time and
// invalidity date; the blocked-key list; each token's role, scope, expiry,
// secret hash and revocation; each key's state, purpose and public key. A
// record changed, added or deleted outside the CA (a SQL edit) is named in
// the *StateError. VerifyState trusts the chain: run VerifyAudit first.
func VerifyState(ctx context.Context, src StateSource) (StateReport, error) {
	certs := map[string]*chainCert{}
	blocked := map[string]string{} // hex hash -> reason
	tokens := map[string]*chainToken{}
	keys := map[string]*chainKey{}
	var bad []string
	miss := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }
	certKey := func(issuer, serial string) string { return issuer + "/" + serial }
	bySerial := map[string][]string{} // serial -> cert keys, for events that name no issuer
	find := func(issuer, serial string) *chainCert {
		if issuer == "" && len(bySerial[serial]) == 1 {
			return certs[bySerial[serial][0]]
		}
		return certs[certKey(issuer, serial)]
	}

	err := src.ScanAudit(ctx, func(e audit.Event) error {
		d := e.Detail
		switch e.Action {
		case audit.ActionCertIssued:
			k := certKey(d["issuer"], e.Target)
			certs[k] = &chainCert{serial: e.Target, seq: e.Seq, der: d[detailDERSHA256]}
			bySerial[e.Target] = append(bySerial[e.Target], k)
		case audit.ActionCertRevoked:
			c := find(d["issuer"], e.Target)
			if c == nil {
				miss("event %d revokes certificate %s (issuer %s), which no cert.issued event records", e.Seq, e.Target, d["issuer"])
				return nil
			}
			c.revoked, c.revokedAt, c.reason, c.invalidity = true, e.Time, d["reason"], d["invalidity_date"]
			if hs := d["held_since"]; hs != "" {
				t, err := time.Parse(time.RFC3339, hs)
				if err != nil {
					miss("event %d: held_since %q: %v", e.Seq, hs, err)
					return nil
				}
				c.revokedAt = t
			}
		case audit.ActionCertUnheld:
			if c := find(d["issuer"], e.Target); c != nil {
				c.revoked, c.revokedAt, c.reason, c.invalidity = false, time.Time{}, "", ""
			}
		case audit.ActionKeyBlocked:
			blocked[e.Target] = d["reason"]
		case audit.ActionTokenCreated:
			tokens[e.Target] = &chainToken{seq: e.Seq, role: d["role"], profiles: d["profiles"], managed: d["managed"],
				expires: d["expires"], secretHash: d[detailSecretDigest]}
		case audit.ActionTokenRevoked:
			if t := tokens[e.Target]; t != nil {
				t.revoked = e.Time
			}
		case audit.ActionKeyGenerated:
			keys[e.Target] = &chainKey{seq: e.Seq, state: store.KeyActive, purpose: d["purpose"], algo: d["algorithm"],
				pubSH: d[detailPublicKeyDigest]}
		case audit.ActionKeyRetired, audit.ActionKeyDestroyed:
			if k := keys[e.Target]; k != nil {
				k.state = strings.TrimPrefix(e.Action, "key.")
			}
		}
		return nil
	})
	if err != nil {
		return StateReport{}, fmt.Errorf("read audit log: %w", err)
	}

	var rep StateReport
	err = src.ScanAllCertificates(ctx, func(r store.CertRecord) error {
		rep.Certificates++
		c := certs[certKey(r.IssuerID, r.Serial)]
		if c == nil {
			miss("certificate %s (issuer %s) has no cert.issued event: recorded outside the CA", r.Serial, r.IssuerID)
			return nil
		}
		c.seen = true
		if c.der != "" {
			rep.DERChecked++
			if derDigest(r.DER) != c.der {
				miss("certificate %s: its DER is not the one cert.issued (event %d) recorded", r.Serial, c.seq)
			}
		}
		switch {
		case c.revoked && r.RevokedAt.IsZero():
			miss("certificate %s: revoked (%s) at %s by the audit chain, but its record says not revoked",
				r.Serial, c.reason, c.revokedAt.UTC().Format(time.RFC3339))
		case !c.revoked && !r.RevokedAt.IsZero():
			miss("certificate %s: its record says revoked (%s) at %s, but the audit chain never revoked it",
				r.Serial, ReasonName(r.RevokeReason), r.RevokedAt.UTC().Format(time.RFC3339))
		case c.revoked:
			if got := ReasonName(r.RevokeReason); got != c.reason {
				miss("certificate %s: revocation reason is %s in its record, %s in the audit chain", r.Serial, got, c.reason)
			}
			if !r.RevokedAt.Truncate(time.Second).Equal(c.revokedAt.Truncate(time.Second)) {
				miss("certificate %s: revoked at %s in its record, at %s in the audit chain", r.Serial,
					r.RevokedAt.UTC().Format(time.RFC3339), c.revokedAt.UTC().Format(time.RFC3339))
			}
			got := ""
			if !r.InvalidityDate.IsZero() {
				got = r.InvalidityDate.UTC().Format(time.RFC3339)
			}
			if got != c.invalidity {
				miss("certificate %s: invalidity date is %q in its record, %q in the audit chain", r.Serial, got, c.invalidity)
			}
		}
		return nil
	})
	if err != nil {
		return StateReport{}, fmt.Errorf("read certificates: %w", err)
	}
	for _, k := range slices.Sorted(maps.Keys(certs)) {
		if c := certs[k]; !c.seen {
			miss("certificate %s recorded by cert.issued (event %d) is missing from the database", c.serial, c.seq)
		}
	}

	bks, err := src.BlockedKeys(ctx)
	if err != nil {
		return StateReport{}, err
	}
	rep.BlockedKeys = len(bks)
	rows := map[string]bool{}
	for _, b := range bks {
		h := hex.EncodeToString(b.SPKIHash)
		rows[h] = true
		reason, ok := blocked[h]
		switch {
		case !ok:
			miss("blocked key %s has no key.blocked event: blocked outside the CA", h)
		case reason != b.Reason:
			miss("blocked key %s: reason %s in its record, %s in the audit chain", h, b.Reason, reason)
		}
	}
	for _, h := range slices.Sorted(maps.Keys(blocked)) {
		if !rows[h] {
			miss("key %s blocked by the audit chain is missing from the blocked-key list (unblocked outside the CA)", h)
		}
	}

	toks, err := src.Tokens(ctx)
	if err != nil {
		return StateReport{}, err
	}
	rep.Tokens = len(toks)
	for _, r := range toks {
		t := tokens[r.ID]
		if t == nil {
			miss("token %s has no token.created event: created outside the CA", r.ID)
			continue
		}
		t.seen = true
		// Compared as instants: the event wrote the expiry in the server's
		// zone, the record reads back in UTC.
		expires := ""
		if !r.Expires.IsZero() {
			expires = r.Expires.UTC().Format(time.RFC3339)
		}
		if e, err := time.Parse(time.RFC3339, t.expires); err == nil {
			t.expires = e.UTC().Format(time.RFC3339)
		}
		switch {
		case r.Role != t.role:
			miss("token %s: role %s in its record, %s in the audit chain", r.ID, r.Role, t.role)
		case strings.Join(r.Profiles, ",") != t.profiles:
			miss("token %s: profiles %q in its record, %q in the audit chain", r.ID, strings.Join(r.Profiles, ","), t.profiles)
		case r.Managed != t.managed:
			miss("token %s: managed certificate %q in its record, %q in the audit chain", r.ID, r.Managed, t.managed)
		case expires != t.expires:
			miss("token %s: expiry %q in its record, %q in the audit chain", r.ID, expires, t.expires)
		case t.secretHash != "" && derDigest(r.SecretHash) != t.secretHash:
			miss("token %s: its secret hash is not the one token.created (event %d) recorded", r.ID, t.seq)
		case t.revoked.IsZero() != r.Revoked.IsZero():
			if r.Revoked.IsZero() {
				miss("token %s: revoked by the audit chain at %s, but its record says not revoked", r.ID, t.revoked.UTC().Format(time.RFC3339))
			} else {
				miss("token %s: its record says revoked, but the audit chain never revoked it", r.ID)
			}
		}
	}
	for _, id := range slices.Sorted(maps.Keys(tokens)) {
		if t := tokens[id]; !t.seen {
			miss("token %s recorded by token.created (event %d) is missing from the database", id, t.seq)
		}
	}

	krs, err := src.Keys(ctx)
	if err != nil {
		return StateReport{}, err
	}
	rep.Keys = len(krs)
	for _, r := range krs {
		k := keys[r.ID]
		if k == nil {
			miss("key %s has no key.generated event: inserted outside the CA", r.ID)
			continue
		}
		k.seen = true
		switch {
		case r.State != k.state:
			miss("key %s: state %s in its record, %s in the audit chain", r.ID, r.State, k.state)
		case r.Purpose != k.purpose || r.Algorithm != k.algo:
			miss("key %s: %s %s in its record, %s %s in the audit chain", r.ID, r.Purpose, r.Algorithm, k.purpose, k.algo)
		case k.pubSH != "" && derDigest(r.PublicKey) != k.pubSH:
			miss("key %s: its public key is not the one key.generated (event %d) recorded", r.ID, k.seq)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(keys)) {
		if k := keys[id]; !k.seen {
			miss("key %s recorded by key.generated (event %d) is missing from the database", id, k.seq)
		}
	}
	if len(bad) > 0 {
		return rep, &StateError{Mismatches: bad}
	}
	return rep, nil
}
