package store

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/ca/audit"
)

// certAt returns the certificate issuer recorded under serial.
func certAt(t testing.TB, s *SQLite, issuer, serial string) CertRecord {
	t.Helper()
	got, _, err := s.Certificates(context.Background(), CertFilter{IssuerID: issuer, Serial: serial})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("Certificates(%s/%s) = %d records, want 1", issuer, serial, len(got))
	}
	return got[0]
}

// seedCerts records a certificate for each issuer/serial pair and returns
// the records as stored.
func seedCerts(t testing.TB, s *SQLite, pairs ...[2]string) []CertRecord {
	t.Helper()
	out := make([]CertRecord, len(pairs))
	mustTx(t, s, func(tx Tx) error {
		for i, p := range pairs {
			out[i] = testCert(p[0], p[1])
			if err := tx.InsertCertificate(&out[i]); err != nil {
				return err
			}
		}
		return nil
	})
	return out
}

func TestRevokeCertificate(t *testing.T) {
	t.Parallel()
	s := openTest(t, Config{})
	ctx := context.Background()
	seedIssuers(t, s, "int-a", "int-b")
	recs := seedCerts(t, s, [2]string{"int-a", "ab"}, [2]string{"int-b", "ab"}, [2]string{"int-a", "cd"})
	at := testStart.Add(time.Hour)
	invalid := testStart.Add(30 * time.Minute)

	mustTx(t, s, func(tx Tx) error { return tx.RevokeCertificate("int-a", "ab", at, 1, invalid) })
	want := recs[0]
	want.RevokedAt, want.RevokeReason, want.InvalidityDate = at, 1, invalid
	if got := certAt(t, s, "int-a", "ab"); !reflect.DeepEqual(got, want) {
		t.Errorf("revoked record =\n%+v\nwant\n%+v", got, want)
	}
	if got, err := s.Certificate(ctx, "ab"); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Certificate(ab) = %+v, %v; want the revoked record", got, err)
	}
	// The same serial under another issuer is another certificate.
	if got := certAt(t, s, "int-b", "ab"); !reflect.DeepEqual(got, recs[1]) {
		t.Errorf("int-b/ab changed: %+v", got)
	}
	revoked, _, err := s.Certificates(ctx, CertFilter{Status: "revoked", Now: at})
	if err != nil || len(revoked) != 1 || revoked[0].ID != recs[0].ID {
		t.Errorf("Certificates(revoked) = %v, %v; want int-a/ab only", serials(revoked), err)
	}

	t.Run("no invalidity date", func(t *testing.T) {
		t.Parallel()
		mustTx(t, s, func(tx Tx) error { return tx.RevokeCertificate("int-a", "cd", at, 0, time.Time{}) })
		got := certAt(t, s, "int-a", "cd")
		if !got.RevokedAt.Equal(at) || got.RevokeReason != 0 || !got.InvalidityDate.IsZero() {
			t.Errorf("record = %+v, want revoked at %v, reason 0, no invalidity date", got, at)
		}
	})

	refusals := []struct {
		name    string
		issuer  string
		serial  string
		at      time.Time
		wantErr error // nil: any error that is neither sentinel
	}{
		{"again, another reason", "int-a", "ab", at.Add(time.Hour), ErrAlreadyRevoked},
		{"unknown serial", "int-a", "ef", at, ErrNotFound},
		{"serial of another issuer", "int-b", "cd", at, ErrNotFound},
		{"unknown issuer", "int-c", "ab", at, ErrNotFound},
		{"zero time", "int-b", "ab", time.Time{}, nil},
		{"the epoch", "int-b", "ab", time.Unix(0, 0), nil},
		{"unstorable time", "int-b", "ab", time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC), nil},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := s.WithTx(ctx, func(tx Tx) error {
				// The refusal must roll back the whole transaction, audit event included.
				if _, err := tx.AppendAudit(audit.Event{Time: at, Actor: "test", Action: "cert.revoked", Target: tt.serial}); err != nil {
					return err
				}
				return tx.RevokeCertificate(tt.issuer, tt.serial, tt.at, 4, time.Time{})
			})
			switch {
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Errorf("RevokeCertificate = %v, want %v", err, tt.wantErr)
			case tt.wantErr == nil && (err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrAlreadyRevoked)):
				t.Errorf("RevokeCertificate = %v, want a plain error", err)
			}
			if err != nil && !strings.Contains(err.Error(), tt.issuer+"/"+tt.serial) {
				t.Errorf("error %q does not name the certificate", err)
			}
			if evs, _, _ := s.AuditEvents(ctx, AuditFilter{Target: tt.serial}); len(evs) != 0 {
				t.Errorf("refused transaction left %d audit events", len(evs))
			}
		})
	}
	t.Cleanup(func() {
		// After every refusal: int-a/ab keeps its first revocation and
		// int-b/ab is still not revoked.
		if got := certAt(t, s, "int-a", "ab"); !reflect.DeepEqual(got, want) {
			t.Errorf("int-a/ab after refusals =\n%+v\nwant\n%+v", got, want)
		}
		if got := certAt(t, s, "int-b", "ab"); !reflect.DeepEqual(got, recs[1]) {
			t.Errorf("int-b/ab after refusals = %+v", got)
		}
	})
}

func TestUnholdCertificate(t *testing.T) {
	t.Parallel()
	s := openTest(t, Config{})
	ctx := context.Background()
	seedIssuers(t, s, "int")
	recs := seedCerts(t, s, [2]string{"int", "01"}, [2]string{"int", "02"}, [2]string{"int", "03"})
	held, compromised, valid := recs[0], recs[1], recs[2]
	at := testStart.Add(time.Hour)
	mustTx(t, s, func(tx Tx) error {
		if err := tx.RevokeCertificate("int", held.Serial, at, reasonCertificateHold, at.Add(-time.Minute)); err != nil {
			return err
		}
		return tx.RevokeCertificate("int", compromised.Serial, at, 1, time.Time{})
	})
	compromisedRec := certAt(t, s, "int", compromised.Serial)

	mustTx(t, s, func(tx Tx) error { return tx.UnholdCertificate("int", held.Serial) })
	if got := certAt(t, s, "int", held.Serial); !reflect.DeepEqual(got, held) {
		t.Errorf("after unhold =\n%+v\nwant the unrevoked record\n%+v", got, held)
	}

	for _, tt := range []struct {
		name, serial string
		want         error
	}{
		{"no longer on hold", held.Serial, ErrNotOnHold},
		{"revoked for another reason", compromised.Serial, ErrNotOnHold},
		{"never revoked", valid.Serial, ErrNotOnHold},
		{"unknown", "ff", ErrNotFound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := s.WithTx(ctx, func(tx Tx) error { return tx.UnholdCertificate("int", tt.serial) })
			if !errors.Is(err, tt.want) {
				t.Errorf("UnholdCertificate = %v, want %v", err, tt.want)
			}
		})
	}
	if got := certAt(t, s, "int", compromised.Serial); !reflect.DeepEqual(got, compromisedRec) {
		t.Errorf("refused unhold changed a revoked record: %+v", got)
	}
	if got := certAt(t, s, "int", valid.Serial); !reflect.DeepEqual(got, valid) {
		t.Errorf("refused unhold changed a valid record: %+v", got)
	}

	// Released from hold, the certificate can be revoked again.
	later := at.Add(time.Hour)
	mustTx(t, s, func(tx Tx) error { return tx.RevokeCertificate("int", held.Serial, later, 4, time.Time{}) })
	if got := certAt(t, s, "int", held.Serial); !got.RevokedAt.Equal(later) || got.RevokeReason != 4 || !got.InvalidityDate.IsZero() {
		t.Errorf("revoked after unhold: %+v", got)
	}
}

// TestRevokedIndex checks that listing an issuer's revoked certificates, as
// CRL generation will, is served by the partial index.
func TestRevokedIndex(t *testing.T) {
	t.Parallel()
	s := openTest(t, Config{})
	if got := queryPlan(t, s, "SELECT serial, revoked_at FROM certificates WHERE issuer_id = ? AND revoked_at != 0 ORDER BY revoked_at", "int"); !strings.Contains(got, "certificates_revoked") || strings.Contains(got, "TEMP B-TREE") {
		t.Errorf("query plan %q does not use certificates_revoked for both filter and order", got)
	}
}

// TestMigrateRevocation opens a database written before migration 0003,
// with a certificate revoked by hand, and checks the record survives.
func TestMigrateRevocation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sigil.db")
	old, err := sql.Open("sqlite", dsn(path, false))
	if err != nil {
		t.Fatal(err)
	}
	stmts := []string{"CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied BIGINT NOT NULL)"}
	for _, name := range []string{"migrations/0001_init.sql", "migrations/0002_acme.sql"} {
		body, err := migrationFS.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		stmts = append(stmts, string(body))
	}
	stmts = append(stmts,
		"INSERT INTO schema_migrations (version, applied) VALUES (1, 1), (2, 2)",
		"INSERT INTO keys (id, purpose, algorithm, backend, state, public_key, created) VALUES ('k', 'intermediate', 'ECDSA-P256', 'passphrase', 'active', x'00', 1)",
		"INSERT INTO issuers (id, kind, key_id, cert_der, state, created) VALUES ('int', 'intermediate', 'k', x'00', 'active', 1)",
		`INSERT INTO certificates (issuer_id, serial, subject, sans, not_before, not_after, key_algorithm, profile,
			requester, channel, der, created, revoked_at, revoke_reason) VALUES
			('int', 'aa', 'CN=a', '', 1, 2, 'ECDSA-P256', 'p', 'cli', 'cli', x'00', 1, 5000000000, 1),
			('int', 'bb', 'CN=b', '', 1, 2, 'ECDSA-P256', 'p', 'cli', 'cli', x'00', 1, 0, 0)`,
	)
	for _, q := range stmts {
		if _, err := old.ExecContext(ctx, q); err != nil {
			t.Fatalf("%.60s: %v", q, err)
		}
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}

	s := openTest(t, Config{Path: path})
	aa := certAt(t, s, "int", "aa")
	if !aa.RevokedAt.Equal(time.Unix(5, 0)) || aa.RevokeReason != 1 || !aa.InvalidityDate.IsZero() {
		t.Errorf("migrated revoked record = %+v", aa)
	}
	at := testStart
	mustTx(t, s, func(tx Tx) error { return tx.RevokeCertificate("int", "bb", at, 3, at.Add(-time.Hour)) })
	bb := certAt(t, s, "int", "bb")
	if !bb.RevokedAt.Equal(at) || bb.RevokeReason != 3 || !bb.InvalidityDate.Equal(at.Add(-time.Hour)) {
		t.Errorf("revoked after migration = %+v", bb)
	}
}

// queryPlan returns SQLite's EXPLAIN QUERY PLAN details for q, joined by "; ".
func queryPlan(t *testing.T, s *SQLite, q string, args ...any) string {
	t.Helper()
	rows, err := s.read.QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(plan, "; ")
}
