package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/store"
)

func testRevokedCertificates(t *testing.T, open Opener) {
	t.Parallel()
	ctx := context.Background()
	s := openTest(t, open)
	seedIssuers(t, s, "int", "other")
	revokedAt := testStart.Add(time.Hour)
	invalidity := testStart.Add(30 * time.Minute)
	type cert struct {
		issuer, serial string
		shard          int
		notAfter       time.Time
		revoked        time.Time
		reason         int
		invalidity     time.Time
	}
	certs := []cert{
		{"int", "a1", 1, testStart.Add(48 * time.Hour), revokedAt, 1, invalidity},
		{"int", "a2", 1, testStart.Add(48 * time.Hour), time.Time{}, 0, time.Time{}}, // not revoked
		{"int", "a3", 2, testStart.Add(48 * time.Hour), revokedAt, 4, time.Time{}},   // other shard
		{"other", "a4", 1, testStart.Add(48 * time.Hour), revokedAt, 4, time.Time{}}, // other issuer
		{"int", "a5", 1, testStart.Add(10 * time.Hour), revokedAt, 5, time.Time{}},   // expires at 10h
		// Expired at 5h but revoked only at 20h: it must appear once after that.
		{"int", "a6", 1, testStart.Add(5 * time.Hour), testStart.Add(20 * time.Hour), 3, time.Time{}},
		{"int", "a7", 0, testStart.Add(48 * time.Hour), revokedAt, 0, time.Time{}}, // whole-CRL shard
	}
	mustTx(t, s, func(tx store.Tx) error {
		for _, c := range certs {
			rec := testCert(c.issuer, c.serial)
			rec.CRLShard = c.shard
			rec.NotAfter = c.notAfter
			if err := issue(tx, &rec); err != nil {
				return err
			}
			if !c.revoked.IsZero() {
				if err := tx.RevokeCertificate(c.issuer, c.serial, c.revoked, c.reason, c.invalidity); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if got, err := s.Certificate(ctx, "a3"); err != nil || got.CRLShard != 2 {
		t.Errorf("Certificate(a3) = shard %d, %v; want shard 2", got.CRLShard, err)
	}
	for _, tc := range []struct {
		name   string
		issuer string
		shard  int
		since  time.Time
		want   []string
	}{
		{"first CRL lists every revoked", "int", 1, time.Time{}, []string{"a1", "a5", "a6"}},
		{"before any expiry", "int", 1, testStart.Add(time.Hour), []string{"a1", "a5", "a6"}},
		{"expired at since still listed", "int", 1, testStart.Add(10 * time.Hour), []string{"a1", "a5", "a6"}},
		{"expired before since dropped", "int", 1, testStart.Add(11 * time.Hour), []string{"a1", "a6"}},
		{"late revocation dropped after it appeared", "int", 1, testStart.Add(21 * time.Hour), []string{"a1"}},
		{"shard 2", "int", 2, time.Time{}, []string{"a3"}},
		{"shard 0", "int", 0, time.Time{}, []string{"a7"}},
		{"other issuer", "other", 1, time.Time{}, []string{"a4"}},
		{"empty shard", "int", 3, time.Time{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			var entries []store.RevokedEntry
			if err := s.RevokedCertificates(ctx, tc.issuer, tc.shard, tc.since, func(e store.RevokedEntry) error {
				got = append(got, e.Serial)
				entries = append(entries, e)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("serials = %v, want %v", got, tc.want)
			}
			for _, e := range entries {
				if e.Serial == "a1" && (!e.RevokedAt.Equal(revokedAt) || e.Reason != 1 || !e.InvalidityDate.Equal(invalidity)) {
					t.Errorf("a1 entry = %+v", e)
				}
				if e.Serial == "a3" && !e.InvalidityDate.IsZero() {
					t.Errorf("a3 has an invalidity date: %+v", e)
				}
			}
		})
	}
	t.Run("callback error stops the scan", func(t *testing.T) {
		stop := errors.New("stop")
		calls := 0
		err := s.RevokedCertificates(ctx, "int", 1, time.Time{}, func(store.RevokedEntry) error { calls++; return stop })
		if !errors.Is(err, stop) || calls != 1 {
			t.Errorf("err = %v after %d calls, want stop after 1", err, calls)
		}
	})
}

func testPutCRL(t *testing.T, open Opener) {
	t.Parallel()
	ctx := context.Background()
	s := openTest(t, open)
	seedIssuers(t, s, "int")
	if _, err := s.CRL(ctx, "int", 0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("CRL before any = %v, want ErrNotFound", err)
	}
	put := func(shard int, n int64) error {
		return s.WithTx(ctx, func(tx store.Tx) error {
			return tx.PutCRL(store.CRLRecord{IssuerID: "int", Shard: shard, Number: n, ThisUpdate: testStart.Add(time.Duration(n) * time.Hour),
				NextUpdate: testStart.Add(time.Duration(n+24) * time.Hour), DER: []byte{byte(n)}})
		})
	}
	for _, step := range []struct {
		shard   int
		n       int64
		wantErr error
	}{
		{0, 1, nil}, {0, 2, nil}, {1, 1, nil}, {0, 2, store.ErrDuplicate}, {0, 1, store.ErrDuplicate}, {0, 5, nil}, {1, 0, errAny},
	} {
		err := put(step.shard, step.n)
		switch {
		case step.wantErr == errAny && err == nil:
			t.Errorf("put shard %d number %d succeeded, want an error", step.shard, step.n)
		case step.wantErr != errAny && !errors.Is(err, step.wantErr) && (step.wantErr != nil || err != nil):
			t.Errorf("put shard %d number %d = %v, want %v", step.shard, step.n, err, step.wantErr)
		}
	}
	got, err := s.CRL(ctx, "int", 0)
	if err != nil || got.Number != 5 || got.DER[0] != 5 || !got.ThisUpdate.Equal(testStart.Add(5*time.Hour)) || !got.NextUpdate.Equal(testStart.Add(29*time.Hour)) {
		t.Errorf("CRL(int, 0) = %+v, %v; want number 5", got, err)
	}
	all, err := s.CRLs(ctx, "int")
	if err != nil || len(all) != 2 || all[0].Shard != 0 || all[1].Shard != 1 || all[1].Number != 1 {
		t.Errorf("CRLs(int) = %+v, %v", all, err)
	}
}

// errAny marks a step that must fail, whatever the error.
var errAny = errors.New("any error")

func testOCSPResponses(t *testing.T, open Opener) {
	t.Parallel()
	s := openTest(t, open)
	ctx := context.Background()
	seedIssuers(t, s, "int-a", "int-b")
	r := func(issuer, serial, hash string, this time.Time, der string) store.OCSPResponse {
		return store.OCSPResponse{IssuerID: issuer, Serial: serial, Hash: hash, DER: []byte(der), ThisUpdate: this, NextUpdate: this.Add(24 * time.Hour)}
	}
	t0 := testStart
	mustTx(t, s, func(tx store.Tx) error {
		return tx.PutOCSPResponses([]store.OCSPResponse{
			r("int-a", "01", "sha1", t0, "a1"), r("int-a", "01", "sha256", t0, "a256"),
			r("int-a", "02", "sha1", t0, "b1"), r("int-b", "01", "sha1", t0, "other"),
		})
	})
	// A newer response replaces; an older one never does.
	mustTx(t, s, func(tx store.Tx) error {
		return tx.PutOCSPResponses([]store.OCSPResponse{r("int-a", "01", "sha1", t0.Add(time.Hour), "a1-new"), r("int-a", "02", "sha1", t0.Add(-time.Hour), "b1-old")})
	})
	got := map[string]string{}
	if err := s.OCSPResponses(ctx, "int-a", t0, func(o store.OCSPResponse) error {
		got[o.Serial+"/"+o.Hash] = string(o.DER)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"01/sha1": "a1-new", "01/sha256": "a256", "02/sha1": "b1"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("OCSPResponses = %v, want %v", got, want)
	}
	// Responses past their nextUpdate are not loaded, and purged.
	n := 0
	if err := s.OCSPResponses(ctx, "int-a", t0.Add(24*time.Hour), func(store.OCSPResponse) error { n++; return nil }); err != nil || n != 1 {
		t.Errorf("OCSPResponses after 24h: %d, %v; want only the refreshed one", n, err)
	}
	mustTx(t, s, func(tx store.Tx) error {
		n, err := tx.PurgeOCSPResponses(t0.Add(25 * time.Hour))
		if n != 3 {
			t.Errorf("purged %d, want 3", n)
		}
		return err
	})
	stop := errors.New("stop")
	if err := s.OCSPResponses(ctx, "int-a", t0, func(store.OCSPResponse) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("fn error = %v, want stop", err)
	}
	err := s.WithTx(ctx, func(tx store.Tx) error { return tx.PutOCSPResponses([]store.OCSPResponse{{IssuerID: "int-a"}}) })
	if err == nil {
		t.Error("incomplete response stored")
	}
}

func testCertStatuses(t *testing.T, open Opener) {
	t.Parallel()
	s := openTest(t, open)
	ctx := context.Background()
	seedIssuers(t, s, "int-a", "int-b")
	const total = certStatusPage*2 + 17
	mustTx(t, s, func(tx store.Tx) error {
		for i := range total {
			c := testCert("int-a", fmt.Sprintf("%x", i+1))
			if i%10 == 0 {
				c.NotAfter = testStart.Add(-time.Hour) // expired
			}
			if err := tx.InsertCertificate(&c); err != nil {
				return err
			}
		}
		c := testCert("int-b", "int-b-only")
		return tx.InsertCertificate(&c)
	})
	mustTx(t, s, func(tx store.Tx) error {
		return tx.RevokeCertificate("int-a", "2", testStart.Add(time.Minute), 1, time.Time{})
	})
	var n int
	var last int64
	seen := map[string]bool{}
	err := s.CertStatuses(ctx, "int-a", testStart, func(c store.CertStatus) error {
		n++
		if c.ID <= last {
			t.Errorf("id %d after %d", c.ID, last)
		}
		last = c.ID
		if seen[c.Serial] {
			t.Errorf("serial %s twice", c.Serial)
		}
		seen[c.Serial] = true
		if c.Serial == "2" && (c.RevokedAt.IsZero() || c.RevokeReason != 1) {
			t.Errorf("serial 2: %+v, want revoked keyCompromise", c)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := total - (total+9)/10; n != want {
		t.Errorf("CertStatuses saw %d, want %d unexpired", n, want)
	}
	if seen["1"] || seen["int-b-only"] {
		t.Error("expired certificate or another issuer's seen")
	}
}

// certStatusPage is the page size of SQLite's CertStatuses (and a size a
// paging backend may well pick): the test crosses two page boundaries.
const certStatusPage = 1000
