package storetest

import (
	"bytes"
	"context"
	"crypto"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/internal/testclock"
	"github.com/sigil-ca/sigil/store"
)

// Options is what a test asks of the store it opens.
type Options struct {
	// Clock is the store's clock (a fake one). A nil Clock must make the
	// backend refuse to open: a store never falls back to the wall clock.
	Clock clockwork.Clock
	// Checkpointer, if set, is installed before the store is used: it
	// signs audit checkpoints and transparency log tree heads.
	Checkpointer *store.Checkpointer
}

// Opener opens a new, empty store of the backend under test, one per call,
// with o; it closes the store when t ends (t.Cleanup). It returns the
// backend's error when the store cannot be opened with o.
type Opener func(t *testing.T, o Options) (store.Store, error)

// Filler is implemented by a store an Opener returns when its backend can
// be made full in a test: SetFull(true) makes every write that needs more
// space fail as a full disk does, SetFull(false) gives the space back.
// Without it the ErrFull contract is skipped, saying so.
type Filler interface {
	SetFull(full bool) error
}

// Run runs the contract suite against the backend open opens, one subtest
// per contract area. Subtests run in parallel, each on its own store.
func Run(t *testing.T, open Opener) {
	areas := []struct {
		name  string
		tests []test
	}{
		{"open", []test{{"clock required", testClockRequired}, {"health", testHealth}}},
		{"keys", []test{
			{"kek round trip", testKEKRoundTrip},
			{"key round trip", testKeyRoundTrip},
			{"key retire destroy", testKeyRetireDestroy},
			{"issuer round trip", testIssuerRoundTrip},
			{"setting round trip", testSettingRoundTrip},
		}},
		{"tokens", []test{
			{"round trip", testTokenRoundTrip},
			{"managed scope", testTokenManagedScope},
		}},
		{"certificates", []test{
			{"round trip", testCertificateRoundTrip},
			{"not found", testNotFound},
			{"duplicate", testDuplicate},
			{"same serial two issuers", testSameSerialTwoIssuers},
			{"replacing", testCertificateReplacing},
			{"blocked keys", testBlockedKeys},
			{"revoke", testRevokeCertificate},
			{"unhold", testUnholdCertificate},
		}},
		{"audit", []test{
			{"round trip", testAuditRoundTrip},
			{"events filter", testAuditEventsFilter},
			{"checkpointer", testCheckpointer},
		}},
		{"transparency log", []test{
			{"proofs", testLogProofs},
			{"tree heads", testTreeHeads},
		}},
		{"acme", []test{
			{"account round trip", testACMEAccountRoundTrip},
			{"order round trip", testACMEOrderRoundTrip},
			{"authz round trip", testACMEAuthzRoundTrip},
			{"orders pagination", testACMEOrdersPagination},
			{"reusable authz", testACMEReusableAuthz},
			{"eab key", testEABKey},
			{"not found", testACMENotFound},
			{"duplicate", testACMEDuplicate},
			{"cert order", testACMECertOrder},
			{"order transition", testACMEOrderTransition},
			{"authz challenge transition", testACMEAuthzChallengeTransition},
			{"concurrent transitions", testACMEConcurrentTransitions},
		}},
		{"nonces", []test{{"use and purge", testNonces}}},
		{"jobs", []test{{"runs", testJobRuns}}},
		{"full", []test{{"refused writes leave nothing", testFull}}},
		{"managed", []test{
			{"record round trip", testManagedRecordRoundTrip},
			{"advance", testManagedAdvance},
			{"due", testManagedDue},
			{"keys and revocations due", testManagedKeysAndRevocationsDue},
		}},
		{"revocation", []test{
			{"revoked certificates", testRevokedCertificates},
			{"put crl", testPutCRL},
			{"ocsp responses", testOCSPResponses},
			{"cert statuses", testCertStatuses},
		}},
		{"tidy", []test{
			{"archive certificates", testArchiveCertificates},
			{"purge expired", testPurgeExpired},
			{"expiring certificates", testExpiringCertificates},
		}},
		{"history", []test{
			{"certificates filter", testCertificatesFilter},
			{"certificates pagination", testCertificatesPagination},
			{"acme account", testHistoryACMEAccount},
			{"summary and scan", testHistorySummary},
		}},
	}
	for _, a := range areas {
		t.Run(a.name, func(t *testing.T) {
			t.Parallel()
			for _, tt := range a.tests {
				t.Run(tt.name, func(t *testing.T) { tt.fn(t, open) })
			}
		})
	}
}

type test struct {
	name string
	fn   func(t *testing.T, open Opener)
}

// testStart is the fixed time tests stamp records with; tests never read the clock.
var testStart = testclock.At(time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC))

// openTest opens a fresh store with a fake clock at testStart.
func openTest(t *testing.T, open Opener) store.Store {
	t.Helper()
	return openWith(t, open, Options{})
}

// openWith opens a fresh store with o, a fake clock at testStart unless o
// has one.
func openWith(t *testing.T, open Opener, o Options) store.Store {
	t.Helper()
	if o.Clock == nil {
		o.Clock = clockwork.NewFakeClockAt(testStart)
	}
	s, err := open(t, o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return s
}

// testClockRequired checks that a store refuses to open without a clock.
func testClockRequired(t *testing.T, open Opener) {
	t.Parallel()
	if _, err := open(t, Options{}); err == nil {
		t.Error("a store opened without a clock")
	}
}

// mustTx runs fn in its own transaction and fails the test if it fails.
// fn runs on the writer goroutine, so it reports failure by returning an
// error, never by calling t.Fatal.
func mustTx(t testing.TB, s store.Store, fn func(store.Tx) error) {
	t.Helper()
	if err := s.WithTx(context.Background(), fn); err != nil {
		t.Fatalf("WithTx: %v", err)
	}
}

// testKey returns a key record whose fields are all set.
func testKey(id string) store.KeyRecord {
	return store.KeyRecord{
		ID:         id,
		Purpose:    "intermediate",
		Algorithm:  "ECDSA-P256",
		Backend:    "passphrase",
		State:      store.KeyActive,
		PublicKey:  []byte("pub-" + id),
		KEKID:      "kek-1",
		WrappedDEK: []byte("dek-" + id),
		Ciphertext: []byte("ct-" + id),
		Created:    testStart,
		Rotated:    testStart.Add(time.Hour),
		LastUsed:   testStart.Add(2 * time.Hour),
	}
}

// seedIssuers records a key and an intermediate issuer for each id.
func seedIssuers(t testing.TB, s store.Store, ids ...string) {
	t.Helper()
	mustTx(t, s, func(tx store.Tx) error {
		for _, id := range ids {
			if err := tx.InsertKey(testKey("key-" + id)); err != nil {
				return err
			}
			if err := tx.InsertIssuer(store.IssuerRecord{ID: id, Kind: "intermediate", ParentID: "root", KeyID: "key-" + id,
				CertDER: []byte("der-" + id), State: store.KeyActive, Created: testStart}); err != nil {
				return err
			}
		}
		return nil
	})
}

// testCert returns a certificate record for issuer and serial with every
// field the caller supplies set.
func testCert(issuer, serial string) store.CertRecord {
	return store.CertRecord{
		IssuerID:     issuer,
		Serial:       serial,
		Subject:      "CN=" + serial + ".example.com",
		SANs:         []string{serial + ".example.com"},
		NotBefore:    testStart,
		NotAfter:     testStart.Add(90 * 24 * time.Hour),
		KeyAlgorithm: "ECDSA-P256",
		Profile:      "server",
		Requester:    "acme:1",
		Channel:      "acme",
		DER:          []byte("der-" + serial),
		Created:      testStart,
	}
}

// issueEvent is the audit event recorded with a certificate.
func issueEvent(c *store.CertRecord) audit.Event {
	return audit.Event{Time: c.Created, Actor: c.Requester, Action: "cert.issued", Target: c.Serial,
		Detail: map[string]string{"issuer": c.IssuerID, "profile": c.Profile}}
}

// issue inserts c and appends its audit event, as the CA does.
func issue(tx store.Tx, c *store.CertRecord) error {
	if err := tx.InsertCertificate(c); err != nil {
		return err
	}
	_, err := tx.AppendAudit(issueEvent(c))
	return err
}

// auditLog returns every stored event in ScanAudit order.
func auditLog(t testing.TB, s store.Store) []audit.Event {
	t.Helper()
	var events []audit.Event
	if err := s.ScanAudit(context.Background(), func(e audit.Event) error {
		events = append(events, e)
		return nil
	}); err != nil {
		t.Fatalf("ScanAudit: %v", err)
	}
	return events
}

// checkChain verifies the stored chain and its checkpoints, checks that
// sequence numbers run 1..n and that AuditHead names the last event, and
// returns the events.
func checkChain(t testing.TB, s store.Store, keys map[string]crypto.PublicKey) []audit.Event {
	t.Helper()
	events := auditLog(t, s)
	for i, e := range events {
		if e.Seq != int64(i+1) {
			t.Fatalf("event %d has seq %d, want %d", i, e.Seq, i+1)
		}
	}
	cps, err := s.Checkpoints(context.Background())
	if err != nil {
		t.Fatalf("Checkpoints: %v", err)
	}
	head, err := audit.VerifyAll(events, cps, keys)
	if err != nil {
		t.Fatalf("VerifyAll: %v", err)
	}
	stored, err := s.AuditHead(context.Background())
	if err != nil {
		t.Fatalf("AuditHead: %v", err)
	}
	if stored.Seq != head.Seq || !bytes.Equal(stored.Hash, head.Hash) {
		t.Fatalf("AuditHead = %d/%x, verified head %d/%x", stored.Seq, stored.Hash, head.Seq, head.Hash)
	}
	return events
}

// serials lists the certificates' serials in the order given.
func serials(certs []store.CertRecord) []string {
	out := []string{}
	for _, c := range certs {
		out = append(out, c.Serial)
	}
	return out
}

// testHealth: an open store answers its health check as a database that
// takes writes (a SQLite file or a PostgreSQL primary), with no lag.
func testHealth(t *testing.T, open Opener) {
	t.Parallel()
	s := openTest(t, open)
	h, err := s.Health(context.Background())
	if err != nil || (h.Role != store.RoleEmbedded && h.Role != store.RolePrimary) || h.Lag != 0 {
		t.Errorf("Health = %+v, %v; want embedded or primary, no lag", h, err)
	}
}
