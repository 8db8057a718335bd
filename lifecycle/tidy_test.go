package lifecycle

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/store"
)

// storeArchiver archives through the store as ca.ArchiveExpired does.
type storeArchiver struct {
	st  *store.SQLite
	clk clockwork.Clock
}

func (a storeArchiver) ArchiveExpired(ctx context.Context, before time.Time, batch int) (int64, error) {
	var total int64
	for {
		var n int64
		if err := a.st.WithTx(ctx, func(tx store.Tx) error {
			var err error
			n, err = tx.ArchiveCertificates(before, a.clk.Now(), batch)
			return err
		}); err != nil {
			return total, err
		}
		total += n
		if n < int64(batch) {
			return total, nil
		}
	}
}

// hotPaths is what CRL generation and the OCSP responder read.
type hotPaths struct {
	CRL      []store.RevokedEntry
	Statuses []store.CertStatus
	OCSP     map[string]string
}

func readHotPaths(t *testing.T, st *store.SQLite, now time.Time) hotPaths {
	t.Helper()
	ctx := context.Background()
	var h hotPaths
	h.OCSP = map[string]string{}
	if err := st.RevokedCertificates(ctx, "int", 0, now.Add(-time.Hour), func(e store.RevokedEntry) error {
		h.CRL = append(h.CRL, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := st.CertStatuses(ctx, "int", now, func(c store.CertStatus) error {
		h.Statuses = append(h.Statuses, c)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := st.OCSPResponses(ctx, "int", now, func(r store.OCSPResponse) error {
		h.OCSP[r.Serial+"/"+r.Hash] = string(r.DER)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return h
}

// TestTidy: with a fake clock, tidy archives certificates and deletes dead
// records only past the retention (spent nonces once expired); nothing
// younger is touched, archived certificates stay queryable by serial, what
// CRLs and OCSP read about unexpired certificates is unchanged, and a
// summary is audited.
func TestTidy(t *testing.T) {
	clk := clockwork.NewFakeClockAt(testStart)
	st, _ := openStore(t, clk)
	ctx := context.Background()
	now := testStart
	retention := 90 * day
	cutoff := now.Add(-retention)
	// Certificates: expired long ago (some revoked), recently, and live.
	var specs []certSpec
	for i := range 7 {
		specs = append(specs, certSpec{serial: fmt.Sprintf("ancient%d", i), notBefore: cutoff.Add(-100 * day),
			notAfter: cutoff.Add(-time.Duration(i+1) * time.Hour), revoked: i == 0})
	}
	specs = append(specs,
		certSpec{serial: "edge", notBefore: cutoff.Add(-90 * day), notAfter: cutoff}, // exactly at the cutoff: kept live
		certSpec{serial: "recent", notBefore: now.Add(-100 * day), notAfter: now.Add(-10 * day), revoked: true},
		certSpec{serial: "live", notBefore: now.Add(-day), notAfter: now.Add(60 * day)},
		certSpec{serial: "live-revoked", notBefore: now.Add(-day), notAfter: now.Add(60 * day), revoked: true},
	)
	seedCerts(t, st, specs...)
	err := st.WithTx(ctx, func(tx store.Tx) error {
		var rs []store.OCSPResponse
		for serial, next := range map[string]time.Time{"ancient0": cutoff.Add(-time.Hour), "ancient1": cutoff.Add(-2 * time.Hour),
			"edge": cutoff, "recent": now.Add(-9 * day), "live": now.Add(12 * time.Hour), "live-revoked": now.Add(12 * time.Hour)} {
			for _, h := range []string{"sha1", "sha256"} {
				rs = append(rs, store.OCSPResponse{IssuerID: "int", Serial: serial, Hash: h, DER: []byte(serial + h),
					ThisUpdate: next.Add(-day), NextUpdate: next})
			}
		}
		if err := tx.PutOCSPResponses(rs); err != nil {
			return err
		}
		acct := store.ACMEAccount{ID: "acct", KeyThumbprint: "tp", KeyJWK: []byte("{}"), Status: "valid", Requester: "acme:acct", Created: cutoff.Add(-day)}
		if err := tx.InsertACMEAccount(acct); err != nil {
			return err
		}
		for i, exp := range []time.Time{cutoff.Add(-time.Second), cutoff.Add(-day), cutoff, now.Add(-day), now.Add(day)} {
			if err := tx.InsertACMEOrder(store.ACMEOrder{ID: fmt.Sprintf("order%d", i), AccountID: "acct", Status: "valid",
				Identifiers: []store.ACMEIdentifier{{Type: "dns", Value: "a.example.com"}}, Expires: exp, Created: exp.Add(-7 * day),
				Updated: exp.Add(-7 * day)}); err != nil {
				return err
			}
			if err := tx.InsertACMEAuthz(store.ACMEAuthz{ID: fmt.Sprintf("authz%d", i), AccountID: "acct", Status: "valid",
				Identifier: store.ACMEIdentifier{Type: "dns", Value: "a.example.com"}, Expires: exp,
				Challenges: []store.ACMEChallenge{{ID: fmt.Sprintf("chall%d", i), Type: "http-01", Token: fmt.Sprintf("tok%d", i), Status: "valid"}}}); err != nil {
				return err
			}
			if err := tx.UseNonce(fmt.Sprintf("nonce%d", i), exp); err != nil {
				return err
			}
			if err := tx.RecordExpiryNotice(store.ExpiryNotice{IssuerID: "int", Serial: fmt.Sprintf("n%d", i), Threshold: day,
				Event: EventCertificateExpiring, NotAfter: exp, Delivered: exp.Add(-day)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	before := readHotPaths(t, st, now)

	tidy, err := NewTidier(TidyConfig{Retention: retention, Batch: 2, Clock: clk, Logger: slog.New(slog.DiscardHandler)},
		storeArchiver{st, clk}, st)
	if err != nil {
		t.Fatal(err)
	}
	res, err := tidy.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// 7 certificates, 4 OCSP responses, 2 orders, 2 authorizations, 2
	// notices, and the 4 expired nonces.
	if res.Items != 7+4+2+2+2+4 {
		t.Errorf("tidied %d rows, want 21", res.Items)
	}
	for _, s := range specs {
		c, err := st.Certificate(ctx, s.serial)
		if err != nil {
			t.Fatalf("%s after tidy: %v", s.serial, err)
		}
		if want := c.NotAfter.Before(cutoff); want != !c.Archived.IsZero() || len(c.DER) == 0 {
			t.Errorf("%s (expired %v before now): archived %v", s.serial, now.Sub(c.NotAfter), c.Archived)
		}
		if s.revoked && c.RevokedAt.IsZero() {
			t.Errorf("%s lost its revocation", s.serial)
		}
	}
	if after := readHotPaths(t, st, now); !reflect.DeepEqual(before, after) {
		t.Errorf("what CRLs and OCSP read changed:\nbefore %+v\nafter  %+v", before, after)
	}
	for i := range 5 {
		_, oerr := st.ACMEOrder(ctx, fmt.Sprintf("order%d", i))
		_, aerr := st.ACMEAuthz(ctx, fmt.Sprintf("authz%d", i))
		gone := i < 2
		if gone != (oerr != nil) || gone != (aerr != nil) {
			t.Errorf("order%d/authz%d: %v / %v, want gone: %v", i, i, oerr, aerr, gone)
		}
	}
	// The live nonce is still spent; the expired ones are gone.
	if err := st.WithTx(ctx, func(tx store.Tx) error { return tx.UseNonce("nonce4", now.Add(day)) }); err == nil {
		t.Error("an unexpired spent nonce was purged")
	}
	evs, _, err := st.AuditEvents(ctx, store.AuditFilter{Action: "tidy.completed"})
	if err != nil || len(evs) != 1 {
		t.Fatalf("tidy events %+v, %v", evs, err)
	}
	want := map[string]string{"certificates_archived": "7", "ocsp_responses_deleted": "4", "acme_orders_deleted": "2",
		"acme_authzs_deleted": "2", "expiry_notices_deleted": "2", "acme_nonces_deleted": "4", "retention": "2160h0m0s",
		"cutoff": cutoff.Format(time.RFC3339)}
	if !reflect.DeepEqual(evs[0].Detail, want) || evs[0].Actor != "system:tidy" {
		t.Errorf("tidy event %s %v, want %v", evs[0].Actor, evs[0].Detail, want)
	}
	// Nothing is left to do at the same instant, and nothing is audited.
	if res, err := tidy.Run(ctx); err != nil || res.Items != 0 {
		t.Errorf("second run: %d, %v", res.Items, err)
	}
	if evs, _, err := st.AuditEvents(ctx, store.AuditFilter{Action: "tidy.completed"}); err != nil || len(evs) != 1 {
		t.Errorf("%d tidy events after an idle run, want 1 (%v)", len(evs), err)
	}
	if _, err := NewTidier(TidyConfig{Retention: time.Hour, Clock: clk, Logger: slog.New(slog.DiscardHandler)}, storeArchiver{st, clk}, st); err == nil {
		t.Error("a retention under a day was accepted")
	}
}
