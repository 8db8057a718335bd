package ca

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/store"
)

// revokeCA is a test authority whose metrics are registered, so tests can
// read the revocation counter.
type revokeCA struct {
	*testCA
	a   *Authority
	reg *prometheus.Registry
}

func newRevokeCA(t *testing.T) *revokeCA {
	t.Helper()
	tc := newTestCA(t, keystore.ECDSAP256, keystore.ECDSAP256)
	reg := prometheus.NewRegistry()
	a, err := New(context.Background(), Config{
		Profiles: DefaultProfiles(), BaseURL: testBaseURL, Clock: tc.clk,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: NewMetrics(reg),
	}, tc.st, tc.init.Keystore)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &revokeCA{testCA: tc, a: a, reg: reg}
}

// issue records a tls-server certificate requested by requester.
func (rc *revokeCA) issue(t *testing.T, requester string) store.CertRecord {
	t.Helper()
	csr := newCSR(t, mustKey(t, keystore.ECDSAP256), "", "revoke.example.com")
	iss, err := rc.a.Sign(context.Background(), SignRequest{CSR: csr, Profile: "tls-server", Requester: requester, Channel: ChannelAPI})
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return iss.Record
}

// stored returns the certificate's record as the store has it.
func (rc *revokeCA) stored(t *testing.T, serial string) store.CertRecord {
	t.Helper()
	rec, err := rc.st.Certificate(context.Background(), serial)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// eventsAfter returns the audit events appended after seq.
func (rc *revokeCA) eventsAfter(t *testing.T, seq int64) []audit.Event {
	t.Helper()
	evs, _, err := rc.st.AuditEvents(context.Background(), store.AuditFilter{Cursor: seq, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func (rc *revokeCA) head(t *testing.T) int64 {
	t.Helper()
	h, err := rc.st.AuditHead(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return h.Seq
}

// revoked returns the revocation counter by reason label.
func (rc *revokeCA) revoked(t *testing.T) map[string]float64 {
	t.Helper()
	mfs, err := rc.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "sigil_certificates_revoked_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" {
					out[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

// opensslSerial writes a serial as openssl prints it: upper case, colons.
func opensslSerial(s string) string {
	if len(s)%2 == 1 {
		s = "0" + s
	}
	var parts []string
	for i := 0; i < len(s); i += 2 {
		parts = append(parts, strings.ToUpper(s[i:i+2]))
	}
	return strings.Join(parts, ":")
}

// checkKind fails unless err is an *Error of kind whose detail contains want.
func checkKind(t *testing.T, err error, kind Kind, want string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %T %v, want *ca.Error %s", err, err, kind)
	}
	if e.Kind != kind || !errors.Is(err, kind) {
		t.Errorf("kind = %s, want %s (%v)", e.Kind, kind, err)
	}
	if !strings.Contains(e.Detail, want) {
		t.Errorf("detail = %q, want it to contain %q", e.Detail, want)
	}
}

// checkRefusalEvent checks that events is exactly one request.refused event
// for op on target by actor, of kind.
func checkRefusalEvent(t *testing.T, events []audit.Event, op, target, actor string, kind Kind) {
	t.Helper()
	if len(events) != 1 {
		t.Fatalf("%d audit events appended, want 1 (request.refused): %+v", len(events), events)
	}
	ev := events[0]
	if ev.Action != "request.refused" || ev.Target != target || ev.Actor != actor ||
		ev.Detail["request"] != op || ev.Detail["reason"] != kind.String() || ev.Detail["detail"] == "" {
		t.Errorf("refusal event = %+v, want request.refused of %s %q by %s, reason %s", ev, op, target, actor, kind)
	}
}

func TestRevoke(t *testing.T) {
	t.Parallel()
	rc := newRevokeCA(t)
	ctx := context.Background()
	rec := rc.issue(t, "token:alice")
	other := rc.issue(t, "token:alice")
	rc.clk.Advance(time.Hour + 500*time.Millisecond)
	revokedAt := rc.clk.Now().UTC().Truncate(time.Second)
	before := rc.head(t)

	got, err := rc.a.Revoke(ctx, RevokeRequest{Serial: opensslSerial(rec.Serial), Reason: ReasonKeyCompromise,
		Actor: "token:admin", Channel: ChannelAPI, BlockKey: true})
	if err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	want := rec
	want.RevokedAt, want.RevokeReason = revokedAt, ReasonKeyCompromise
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Revoke returned\n%+v\nwant\n%+v", got, want)
	}
	if s := rc.stored(t, rec.Serial); !reflect.DeepEqual(s, want) {
		t.Errorf("stored record\n%+v\nwant\n%+v", s, want)
	}
	if s := rc.stored(t, other.Serial); !s.RevokedAt.IsZero() {
		t.Errorf("another certificate was revoked: %+v", s)
	}
	// keyCompromise also blocks the key (TestKeyCompromiseBlocksKey).
	evs := rc.eventsAfter(t, before)
	if len(evs) != 2 || evs[1].Action != "key.blocked" {
		t.Fatalf("%d audit events, want 2 (cert.revoked, key.blocked): %+v", len(evs), evs)
	}
	wantDetail := map[string]string{"reason": "keyCompromise", "issuer": rec.IssuerID, "channel": ChannelAPI}
	if ev := evs[0]; ev.Action != "cert.revoked" || ev.Actor != "token:admin" || ev.Target != rec.Serial ||
		!ev.Time.Equal(revokedAt) || !reflect.DeepEqual(ev.Detail, wantDetail) {
		t.Errorf("audit event = %+v, want cert.revoked of %s by token:admin at %v with %v", ev, rec.Serial, revokedAt, wantDetail)
	}

	t.Run("again is a conflict and changes nothing", func(t *testing.T) {
		rc.clk.Advance(time.Minute)
		before := rc.head(t)
		_, err := rc.a.Revoke(ctx, RevokeRequest{Serial: rec.Serial, Reason: ReasonSuperseded, Actor: "token:bob", Channel: ChannelAPI})
		checkKind(t, err, Conflict, "certificate "+rec.Serial+" is already revoked (keyCompromise) since "+revokedAt.Format(time.RFC3339))
		if s := rc.stored(t, rec.Serial); !reflect.DeepEqual(s, want) {
			t.Errorf("record changed by a refused revocation:\n%+v", s)
		}
		checkRefusalEvent(t, rc.eventsAfter(t, before), "revoke", rec.Serial, "token:bob", Conflict)
	})

	t.Run("metrics", func(t *testing.T) {
		if got := rc.revoked(t); !reflect.DeepEqual(got, map[string]float64{"keyCompromise": 1}) {
			t.Errorf("sigil_certificates_revoked_total = %v, want keyCompromise 1", got)
		}
	})

	t.Run("audit chain", func(t *testing.T) {
		var events []audit.Event
		if err := rc.st.ScanAudit(ctx, func(e audit.Event) error { events = append(events, e); return nil }); err != nil {
			t.Fatal(err)
		}
		if _, err := audit.VerifyAll(events, nil, nil); err != nil {
			t.Fatalf("audit chain: %v", err)
		}
		var actions []string
		for _, e := range events {
			if e.Target == rec.Serial {
				actions = append(actions, e.Action+" by "+e.Actor)
			}
		}
		wantActions := []string{"cert.issued by token:alice", "cert.revoked by token:admin", "request.refused by token:bob"}
		if !reflect.DeepEqual(actions, wantActions) {
			t.Errorf("events for %s = %v, want %v", rec.Serial, actions, wantActions)
		}
	})
}

func TestHoldUnhold(t *testing.T) {
	t.Parallel()
	rc := newRevokeCA(t)
	ctx := context.Background()
	rec := rc.issue(t, "token:alice")

	rc.clk.Advance(time.Hour)
	heldAt := rc.clk.Now().UTC()
	held, err := rc.a.Revoke(ctx, RevokeRequest{Serial: rec.Serial, Reason: ReasonCertificateHold, Actor: "token:admin", Channel: ChannelAPI})
	if err != nil {
		t.Fatalf("hold: %v", err)
	}
	if !held.RevokedAt.Equal(heldAt) || held.RevokeReason != ReasonCertificateHold {
		t.Errorf("held record = %+v", held)
	}

	t.Run("holding a held certificate again is a conflict", func(t *testing.T) {
		_, err := rc.a.Revoke(ctx, RevokeRequest{Serial: rec.Serial, Reason: ReasonCertificateHold, Actor: "token:admin"})
		checkKind(t, err, Conflict, "already revoked (certificateHold)")
	})

	rc.clk.Advance(time.Hour)
	before := rc.head(t)
	got, err := rc.a.Unhold(ctx, rec.Serial, "token:admin")
	if err != nil {
		t.Fatalf("Unhold: %v", err)
	}
	if !reflect.DeepEqual(got, rec) {
		t.Errorf("Unhold returned\n%+v\nwant the record as issued\n%+v", got, rec)
	}
	if s := rc.stored(t, rec.Serial); !reflect.DeepEqual(s, rec) {
		t.Errorf("stored after unhold\n%+v\nwant\n%+v", s, rec)
	}
	evs := rc.eventsAfter(t, before)
	if len(evs) != 1 || evs[0].Action != "cert.unheld" || evs[0].Actor != "token:admin" || evs[0].Target != rec.Serial ||
		evs[0].Detail["held_since"] != heldAt.Format(time.RFC3339) || evs[0].Detail["issuer"] != rec.IssuerID {
		t.Errorf("audit events = %+v, want one cert.unheld by token:admin held since %v", evs, heldAt)
	}

	t.Run("unhold of a valid certificate", func(t *testing.T) {
		before := rc.head(t)
		_, err := rc.a.Unhold(ctx, rec.Serial, "token:admin")
		checkKind(t, err, Conflict, "not on hold: it is not revoked")
		checkRefusalEvent(t, rc.eventsAfter(t, before), "unhold", rec.Serial, "token:admin", Conflict)
	})

	// Released, the certificate can be revoked again, for good.
	rc.clk.Advance(time.Hour)
	revokedAt := rc.clk.Now().UTC()
	if _, err := rc.a.Revoke(ctx, RevokeRequest{Serial: rec.Serial, Reason: ReasonSuperseded, Actor: "token:admin"}); err != nil {
		t.Fatalf("revoke after unhold: %v", err)
	}
	if s := rc.stored(t, rec.Serial); !s.RevokedAt.Equal(revokedAt) || s.RevokeReason != ReasonSuperseded {
		t.Errorf("record = %+v, want superseded at %v", s, revokedAt)
	}

	t.Run("unhold of a revoked certificate", func(t *testing.T) {
		before := rc.head(t)
		_, err := rc.a.Unhold(ctx, rec.Serial, "token:admin")
		checkKind(t, err, Conflict, "revoked (superseded) since "+revokedAt.Format(time.RFC3339)+", which cannot be undone")
		if s := rc.stored(t, rec.Serial); s.RevokeReason != ReasonSuperseded || !s.RevokedAt.Equal(revokedAt) {
			t.Errorf("refused unhold changed the record: %+v", s)
		}
		checkRefusalEvent(t, rc.eventsAfter(t, before), "unhold", rec.Serial, "token:admin", Conflict)
	})

	if got := rc.revoked(t); !reflect.DeepEqual(got, map[string]float64{"certificateHold": 1, "superseded": 1}) {
		t.Errorf("sigil_certificates_revoked_total = %v", got)
	}
}

func TestRevokeRefusals(t *testing.T) {
	t.Parallel()
	rc := newRevokeCA(t)
	ctx := context.Background()
	rec := rc.issue(t, "token:alice")
	rc.clk.Advance(time.Hour)
	now := rc.clk.Now().UTC()

	tests := []struct {
		name   string
		req    RevokeRequest
		target string // the audit target: the serial when it is one
		kind   Kind
		want   string
	}{
		{"reason 7", RevokeRequest{Serial: rec.Serial, Reason: 7}, rec.Serial, Malformed, "not assigned"},
		{"removeFromCRL", RevokeRequest{Serial: rec.Serial, Reason: ReasonRemoveFromCRL}, rec.Serial, Malformed, "unhold"},
		{"negative reason", RevokeRequest{Serial: rec.Serial, Reason: -1}, rec.Serial, Malformed, "unknown revocation reason -1"},
		{"reason 11", RevokeRequest{Serial: rec.Serial, Reason: 11}, rec.Serial, Malformed, "unknown revocation reason 11"},
		{"unknown serial", RevokeRequest{Serial: "0123456789abcdef", Reason: ReasonKeyCompromise}, "123456789abcdef", NotFound, "no certificate with serial 123456789abcdef"},
		{"malformed serial", RevokeRequest{Serial: "not-hex", Reason: ReasonKeyCompromise}, "", Malformed, "not-hex"},
		{"invalidity in the future", RevokeRequest{Serial: rec.Serial, InvalidityDate: now.Add(time.Second)}, rec.Serial, Malformed,
			"invalidity date " + now.Add(time.Second).Format(time.RFC3339) + " is in the future"},
		{"invalidity before notBefore", RevokeRequest{Serial: rec.Serial, InvalidityDate: rec.NotBefore.Add(-time.Second)}, rec.Serial, Malformed,
			"before the certificate's notBefore " + rec.NotBefore.Format(time.RFC3339)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := rc.head(t)
			tt.req.Actor, tt.req.Channel = "token:carol", ChannelCLI
			got, err := rc.a.Revoke(ctx, tt.req)
			checkKind(t, err, tt.kind, tt.want)
			if !reflect.DeepEqual(got, store.CertRecord{}) {
				t.Errorf("refused Revoke returned a record: %+v", got)
			}
			evs := rc.eventsAfter(t, before)
			checkRefusalEvent(t, evs, "revoke", tt.target, "token:carol", tt.kind)
			if len(evs) == 1 && evs[0].Detail["channel"] != ChannelCLI {
				t.Errorf("refusal detail %v lacks the channel", evs[0].Detail)
			}
			if s := rc.stored(t, rec.Serial); !reflect.DeepEqual(s, rec) {
				t.Errorf("refused revocation changed the record: %+v", s)
			}
		})
	}

	t.Run("unhold unknown serial", func(t *testing.T) {
		before := rc.head(t)
		_, err := rc.a.Unhold(ctx, "abcdef", "token:carol")
		checkKind(t, err, NotFound, "no certificate with serial abcdef")
		checkRefusalEvent(t, rc.eventsAfter(t, before), "unhold", "abcdef", "token:carol", NotFound)
	})

	t.Run("surface refusal", func(t *testing.T) {
		before := rc.head(t)
		_, perr := ParseRevocationReason("bogus")
		rc.a.RecordRevocationRefusal(ctx, RevokeRequest{Serial: rec.Serial, Actor: "token:carol", Channel: ChannelAPI}, perr)
		checkRefusalEvent(t, rc.eventsAfter(t, before), "revoke", rec.Serial, "token:carol", Malformed)
	})

	if got := rc.revoked(t); len(got) != 0 {
		t.Errorf("refusals counted as revocations: %v", got)
	}
}

func TestRevokeInvalidityDate(t *testing.T) {
	t.Parallel()
	rc := newRevokeCA(t)
	ctx := context.Background()
	rc.clk.Advance(time.Hour)
	now := rc.clk.Now().UTC()
	// The clock stands still, so every certificate below has this notBefore.
	nb := rc.issue(t, "token:alice").NotBefore
	tests := []struct {
		name             string
		invalidity, want time.Time
	}{
		{"notBefore exactly", nb, nb},
		{"now exactly", now, now},
		{"fractions of a second are dropped", nb.Add(30*time.Second + 700*time.Millisecond), nb.Add(30 * time.Second)},
		{"another time zone", nb.Add(time.Second).In(time.FixedZone("X", 5*3600)), nb.Add(time.Second)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := rc.issue(t, "token:alice")
			if !rec.NotBefore.Equal(nb) {
				t.Fatalf("notBefore %v, want %v", rec.NotBefore, nb)
			}
			before := rc.head(t)
			got, err := rc.a.Revoke(ctx, RevokeRequest{Serial: rec.Serial, Reason: ReasonKeyCompromise,
				InvalidityDate: tt.invalidity, Actor: "token:admin", Channel: ChannelAPI, BlockKey: true})
			if err != nil {
				t.Fatalf("Revoke: %v", err)
			}
			if !got.InvalidityDate.Equal(tt.want) || got.InvalidityDate.Location() != time.UTC {
				t.Errorf("invalidity date = %v, want %v UTC", got.InvalidityDate, tt.want)
			}
			if s := rc.stored(t, rec.Serial); !reflect.DeepEqual(s, got) {
				t.Errorf("stored\n%+v\nreturned\n%+v", s, got)
			}
			evs := rc.eventsAfter(t, before)
			if len(evs) != 2 || evs[0].Detail["invalidity_date"] != tt.want.Format(time.RFC3339) || evs[1].Action != "key.blocked" {
				t.Errorf("audit events %+v, want invalidity_date %s", evs, tt.want.Format(time.RFC3339))
			}
		})
	}
}

func TestParseRevocationReason(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want int // -1: refused
	}{
		{"unspecified", ReasonUnspecified},
		{"keyCompromise", ReasonKeyCompromise},
		{"key-compromise", ReasonKeyCompromise},
		{"key_compromise", ReasonKeyCompromise},
		{"KEYCOMPROMISE", ReasonKeyCompromise},
		{" keyCompromise\n", ReasonKeyCompromise},
		{"cACompromise", ReasonCACompromise},
		{"ca-compromise", ReasonCACompromise},
		{"affiliationChanged", ReasonAffiliationChanged},
		{"superseded", ReasonSuperseded},
		{"cessation-of-operation", ReasonCessationOfOperation},
		{"certificateHold", ReasonCertificateHold},
		{"certificate_hold", ReasonCertificateHold},
		{"privilegeWithdrawn", ReasonPrivilegeWithdrawn},
		{"aACompromise", ReasonAACompromise},
		{"aa-compromise", ReasonAACompromise},
		{"0", 0}, {"1", 1}, {"6", 6}, {"9", 9}, {"10", 10}, {"01", 1},
		{"7", -1}, {"8", -1}, {"11", -1}, {"-1", -1}, {"+1", -1}, {"1.0", -1}, {"0x1", -1},
		{"99999999999999999999999", -1},
		{"removeFromCRL", -1}, {"remove-from-crl", -1}, {"reason(7)", -1},
		{"", -1}, {" ", -1}, {"-", -1}, {"key compromise", -1}, {"compromise", -1}, {"keyCompromised", -1},
	}
	for _, tt := range tests {
		got, err := ParseRevocationReason(tt.in)
		switch {
		case tt.want < 0 && err == nil:
			t.Errorf("ParseRevocationReason(%q) = %d, want a refusal", tt.in, got)
		case tt.want < 0 && KindOf(err) != Malformed:
			t.Errorf("ParseRevocationReason(%q) error %v, want Malformed", tt.in, err)
		case tt.want >= 0 && (err != nil || got != tt.want):
			t.Errorf("ParseRevocationReason(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	_, err := ParseRevocationReason("bogus")
	var e *Error
	if !errors.As(err, &e) || !strings.Contains(e.Detail, `"bogus"`) || !strings.Contains(e.Detail, "keyCompromise") || strings.Contains(e.Detail, "removeFromCRL") {
		t.Errorf("refusal %v does not name the input and the accepted reasons", err)
	}
}

func TestReasonNames(t *testing.T) {
	t.Parallel()
	// Every reason one may revoke with round-trips through its name and code.
	for code := -1; code <= 12; code++ {
		name := ReasonName(code)
		got, err := ParseRevocationReason(name)
		valid := checkReason(code) == nil
		if valid && (err != nil || got != code) {
			t.Errorf("ParseRevocationReason(ReasonName(%d) = %q) = %d, %v", code, name, got, err)
		}
		if !valid && err == nil {
			t.Errorf("ParseRevocationReason(%q) accepted code %d", name, code)
		}
	}
}

// TestOnStatusChange: listeners hear of every committed revocation and
// release from hold, and of nothing refused.
func TestOnStatusChange(t *testing.T) {
	t.Parallel()
	rc := newRevokeCA(t)
	ctx := context.Background()
	var mu sync.Mutex
	var heard []string
	rc.a.OnStatusChange(func(r store.CertRecord) {
		mu.Lock()
		defer mu.Unlock()
		heard = append(heard, fmt.Sprintf("%s:%v", r.Serial, !r.RevokedAt.IsZero()))
	})
	rec := rc.issue(t, "token:alice")
	if _, err := rc.a.Revoke(ctx, RevokeRequest{Serial: rec.Serial, Reason: ReasonCertificateHold, Actor: "token:admin"}); err != nil {
		t.Fatal(err)
	}
	if _, err := rc.a.Revoke(ctx, RevokeRequest{Serial: rec.Serial, Reason: ReasonCertificateHold, Actor: "token:admin"}); err == nil {
		t.Fatal("holding a held certificate again succeeded")
	}
	if _, err := rc.a.Unhold(ctx, rec.Serial, "token:admin"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{rec.Serial + ":true", rec.Serial + ":false"}; !slices.Equal(heard, want) {
		t.Errorf("listener heard %v, want %v", heard, want)
	}
}

// TestHoldMadeFinal: a held certificate is revoked for good without being
// released first, keeping the hold's time; a held sibling of a compromised
// key is made final too.
func TestHoldMadeFinal(t *testing.T) {
	t.Parallel()
	rc := newRevokeCA(t)
	ctx := context.Background()
	key := mustKey(t, keystore.ECDSAP256)
	rec, sibling := rc.issueWithKey(t, key), rc.issueWithKey(t, key)

	rc.clk.Advance(time.Hour)
	heldAt := rc.clk.Now().UTC().Truncate(time.Second)
	for _, s := range []string{rec.Serial, sibling.Serial} {
		if _, err := rc.a.Revoke(ctx, RevokeRequest{Serial: s, Reason: ReasonCertificateHold, Actor: "token:admin"}); err != nil {
			t.Fatalf("hold: %v", err)
		}
	}
	rc.clk.Advance(time.Hour)
	invalidity := rc.clk.Now().UTC().Add(-30 * time.Minute).Truncate(time.Second)
	before := rc.head(t)
	got, err := rc.a.Revoke(ctx, RevokeRequest{Serial: rec.Serial, Reason: ReasonKeyCompromise, InvalidityDate: invalidity, Actor: "token:admin", BlockKey: true})
	if err != nil {
		t.Fatalf("revoke a held certificate: %v", err)
	}
	for _, s := range []store.CertRecord{got, rc.stored(t, rec.Serial)} {
		if !s.RevokedAt.Equal(heldAt) || s.RevokeReason != ReasonKeyCompromise || !s.InvalidityDate.Equal(invalidity) {
			t.Errorf("record revoked %v reason %d invalidity %v, want keyCompromise since the hold at %v with invalidity %v",
				s.RevokedAt, s.RevokeReason, s.InvalidityDate, heldAt, invalidity)
		}
	}
	if s := rc.stored(t, sibling.Serial); !s.RevokedAt.Equal(heldAt) || s.RevokeReason != ReasonKeyCompromise {
		t.Errorf("held sibling revoked %v reason %d, want keyCompromise since %v", s.RevokedAt, s.RevokeReason, heldAt)
	}
	evs := rc.eventsAfter(t, before)
	if len(evs) != 3 || evs[0].Action != "cert.revoked" || evs[0].Detail["held_since"] != heldAt.Format(time.RFC3339) ||
		evs[1].Action != "key.blocked" || evs[2].Target != sibling.Serial || evs[2].Detail["held_since"] == "" {
		t.Errorf("audit events %+v, want cert.revoked (held since %v), key.blocked, cert.revoked of the sibling", evs, heldAt)
	}

	t.Run("final is final", func(t *testing.T) {
		for _, reason := range []int{ReasonSuperseded, ReasonCertificateHold} {
			_, err := rc.a.Revoke(ctx, RevokeRequest{Serial: rec.Serial, Reason: reason, Actor: "token:admin"})
			checkKind(t, err, Conflict, "already revoked (keyCompromise)")
		}
		_, err := rc.a.Unhold(ctx, rec.Serial, "token:admin")
		checkKind(t, err, Conflict, "which cannot be undone")
	})
}
