package postgres_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/internal/testclock"
	"github.com/sigil-ca/sigil/store"
	"github.com/sigil-ca/sigil/store/postgres"
	"github.com/sigil-ca/sigil/store/postgres/pgtest"
)

// TestRollupMatchesScan checks the trigger-kept rollups (migration 0014)
// against counting the certificates themselves: every grouping a rollup
// answers, over random issuance ranges that cut days and spans (some
// before 1970, where day numbers floor below zero), gives the same rows
// and total both ways.
func TestRollupMatchesScan(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := testclock.New()
	s, err := postgres.Open(ctx, postgres.Config{DSN: pgtest.NewDatabase(t), Clock: clk, MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	rng := rand.New(rand.NewPCG(1, 2))
	days := map[string]int64{} // issuance days as Go counts them
	base := time.Date(1969, 11, 1, 0, 0, 0, 0, time.UTC)
	span := 200 * 24 * time.Hour
	if err := s.WithTx(ctx, func(tx store.Tx) error {
		if err := tx.InsertKey(store.KeyRecord{ID: "k", Purpose: "intermediate", Algorithm: "a", Backend: "b",
			State: store.KeyActive, PublicKey: []byte("p"), Created: clk.Now()}); err != nil {
			return err
		}
		for _, id := range []string{"int-a", "int-b"} {
			if err := tx.InsertIssuer(store.IssuerRecord{ID: id, Kind: "intermediate", KeyID: "k", CertDER: []byte(id),
				State: store.KeyActive, Created: clk.Now()}); err != nil {
				return err
			}
		}
		for i := range 600 {
			created := base.Add(time.Duration(rng.Int64N(int64(span))))
			c := store.CertRecord{IssuerID: []string{"int-a", "int-b"}[rng.IntN(2)], Serial: fmt.Sprintf("%x", i+1),
				Subject: "CN=x", NotBefore: created, NotAfter: created.Add(time.Duration(1+rng.IntN(90)) * 24 * time.Hour),
				KeyAlgorithm: "ecdsa-p256", Profile: []string{"server", "client", "code"}[rng.IntN(3)],
				Requester: fmt.Sprintf("r%d", rng.IntN(5)), Channel: []string{"acme", "api"}[rng.IntN(2)],
				DER: []byte{byte(i)}, Created: created}
			days[created.Format(time.DateOnly)]++
			if err := tx.InsertCertificate(&c); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, noRollup := range []bool{false, true} {
		postgres.SetNoRollup(s, noRollup)
		rows, _, err := s.CertificateSummary(ctx, store.CertFilter{}, store.GroupDay)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int64{}
		for _, r := range rows {
			got[r.Key] = r.Count
		}
		if !reflect.DeepEqual(got, days) {
			t.Errorf("days (no rollup: %v) = %v, want %v", noRollup, got, days)
		}
	}
	groups := []store.CertGroup{store.GroupDay, store.GroupProfile, store.GroupChannel, store.GroupIssuer, store.GroupRequester}
	for i := range 40 {
		a := base.Add(time.Duration(rng.Int64N(int64(span))))
		b := a.Add(time.Duration(rng.Int64N(int64(span))))
		f := store.CertFilter{IssuedAfter: a, IssuedBefore: b}
		switch i % 4 {
		case 1:
			f.Profile = "server"
		case 2:
			f.IssuerID = "int-b"
		case 3:
			f.IssuedAfter = time.Time{}
		}
		for _, g := range groups {
			postgres.SetNoRollup(s, false)
			rows, total, err := s.CertificateSummary(ctx, f, g)
			if err != nil {
				t.Fatalf("rollup summary %+v by %s: %v", f, g, err)
			}
			postgres.SetNoRollup(s, true)
			want, wantTotal, err := s.CertificateSummary(ctx, f, g)
			if err != nil {
				t.Fatalf("scan summary %+v by %s: %v", f, g, err)
			}
			if total != wantTotal || !reflect.DeepEqual(rows, want) {
				t.Errorf("summary [%v, %v) profile %q issuer %q by %s:\nrollup %d %v\nscan   %d %v", f.IssuedAfter, f.IssuedBefore,
					f.Profile, f.IssuerID, g, total, rows, wantTotal, want)
			}
		}
	}
}
