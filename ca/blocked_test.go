package ca

import (
	"context"
	"crypto"
	"strings"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/store"
)

// issueWithKey issues a tls-server certificate for key.
func (rc *revokeCA) issueWithKey(t *testing.T, key crypto.Signer) store.CertRecord {
	t.Helper()
	iss, err := rc.a.Sign(context.Background(), SignRequest{CSR: newCSR(t, key, "", "blocked.example.com"), Profile: "tls-server",
		Requester: "token:alice", Channel: ChannelAPI})
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return iss.Record
}

// TestKeyCompromiseBlocksKey: revoking for keyCompromise blocks the key,
// revokes its other unexpired certificates in the same step, and refuses
// new CSRs with it; other keys are untouched.
func TestKeyCompromiseBlocksKey(t *testing.T) {
	t.Parallel()
	rc := newRevokeCA(t)
	ctx := context.Background()
	compromised, fine := mustKey(t, keystore.ECDSAP256), mustKey(t, keystore.ECDSAP256)
	first, sibling, other := rc.issueWithKey(t, compromised), rc.issueWithKey(t, compromised), rc.issueWithKey(t, fine)
	var heard []string
	rc.a.OnStatusChange(func(r store.CertRecord) { heard = append(heard, r.Serial) })
	rc.clk.Advance(time.Minute)
	before := rc.head(t)

	if _, err := rc.a.Revoke(ctx, RevokeRequest{Serial: first.Serial, Reason: ReasonKeyCompromise, Actor: "token:admin", Channel: ChannelAPI, BlockKey: true}); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if s := rc.stored(t, sibling.Serial); s.RevokedAt.IsZero() || s.RevokeReason != ReasonKeyCompromise {
		t.Errorf("sibling with the same key: revoked %v reason %d, want keyCompromise", s.RevokedAt, s.RevokeReason)
	}
	if s := rc.stored(t, other.Serial); !s.RevokedAt.IsZero() {
		t.Errorf("a certificate with another key was revoked")
	}
	actions := map[string]int{}
	for _, ev := range rc.eventsAfter(t, before) {
		actions[ev.Action]++
	}
	if actions["cert.revoked"] != 2 || actions["key.blocked"] != 1 {
		t.Errorf("audit events %v, want 2 cert.revoked and 1 key.blocked", actions)
	}
	if len(heard) != 2 {
		t.Errorf("status listeners heard %v, want both revocations", heard)
	}

	// A new CSR with the key is refused, clearly, and changes nothing.
	_, err := rc.a.Sign(ctx, SignRequest{CSR: newCSR(t, compromised, "", "blocked.example.com"), Profile: "tls-server",
		Requester: "token:alice", Channel: ChannelAPI})
	if KindOf(err) != BadCSR || !strings.Contains(err.Error(), "blocked") {
		t.Errorf("CSR with a blocked key: %v, want a bad_csr naming the block", err)
	}
	if err := rc.a.CheckKeyNotBlocked(ctx, fine.Public()); err != nil {
		t.Errorf("an unblocked key: %v", err)
	}

	// Blocking by hand revokes the other key's certificate; twice is a conflict.
	revoked, err := rc.a.BlockKey(ctx, "token:admin", fine.Public())
	if err != nil || len(revoked) != 1 || revoked[0].Serial != other.Serial {
		t.Fatalf("BlockKey = %v, %v; want %s revoked", revoked, err, other.Serial)
	}
	if _, err := rc.a.BlockKey(ctx, "token:admin", fine.Public()); KindOf(err) != Conflict {
		t.Errorf("blocking twice: %v, want a conflict", err)
	}
}

// TestKeyCompromiseUnproven: a keyCompromise revocation from someone who did
// not prove the compromise (no BlockKey: an issuer, an ACME account) revokes
// that certificate alone; the key is not blocked and the other certificates
// with it, another requester's among them, stay valid.
func TestKeyCompromiseUnproven(t *testing.T) {
	t.Parallel()
	rc := newRevokeCA(t)
	ctx := context.Background()
	key := mustKey(t, keystore.ECDSAP256)
	mine, theirs := rc.issueWithKey(t, key), rc.issueWithKey(t, key)
	rc.clk.Advance(time.Minute)
	before := rc.head(t)
	got, err := rc.a.Revoke(ctx, RevokeRequest{Serial: mine.Serial, Reason: ReasonKeyCompromise, Actor: "acme:x", Channel: ChannelACME})
	if err != nil || got.RevokeReason != ReasonKeyCompromise {
		t.Fatalf("Revoke = %+v, %v; want revoked for keyCompromise", got, err)
	}
	if s := rc.stored(t, theirs.Serial); !s.RevokedAt.IsZero() {
		t.Errorf("the other certificate with the key was revoked (reason %d)", s.RevokeReason)
	}
	if err := rc.a.CheckKeyNotBlocked(ctx, key.Public()); err != nil {
		t.Errorf("key blocked without proof: %v", err)
	}
	if evs := rc.eventsAfter(t, before); len(evs) != 1 || evs[0].Action != "cert.revoked" {
		t.Errorf("audit events %+v, want one cert.revoked", evs)
	}
}
