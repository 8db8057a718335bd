package store

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// seedManaged records a managed certificate name at version 1 (its key,
// certificate and version) due at due, issued by issuer.
func seedManaged(t testing.TB, s *SQLite, issuer, name string, due time.Time) ManagedRecord {
	t.Helper()
	m := ManagedRecord{
		Name: name, Profile: "server", SANs: []string{name + ".example.com"}, KeyType: "ecdsa-p256", RenewAt: "2/3",
		RotateEvery: 1, RevokeAfter: -1, State: ManagedActive, Created: testStart, CreatedBy: "token:admin",
		Version: 1, Serial: name + "01", NotAfter: testStart.Add(90 * 24 * time.Hour), IssuerID: issuer,
		KeyID: "mkey-" + name + "-1", KeyUses: 1, RenewDue: due,
	}
	mustTx(t, s, func(tx Tx) error {
		k := testKey(m.KeyID)
		k.Purpose = "managed"
		if err := tx.InsertKey(k); err != nil {
			return err
		}
		c := testCert(issuer, m.Serial)
		if err := issue(tx, &c); err != nil {
			return err
		}
		if err := tx.InsertManaged(m); err != nil {
			return err
		}
		if err := tx.InsertManagedVersion(ManagedVersion{Name: name, Version: 1, Serial: m.Serial, IssuerID: issuer,
			KeyID: m.KeyID, Created: testStart, NotBefore: c.NotBefore, NotAfter: c.NotAfter, State: VersionCurrent,
			Reason: "created"}); err != nil {
			return err
		}
		return tx.PutManagedKey(m.KeyID, name, c.NotAfter)
	})
	return m
}

// TestManagedQueriesUseIndexes: the renewal job's queries read indexes,
// never a scan of the tables.
func TestManagedQueriesUseIndexes(t *testing.T) {
	s := openTest(t, Config{})
	seedIssuers(t, s, "int")
	for i := range 20 {
		seedManaged(t, s, "int", fmt.Sprintf("q%02d", i), testStart)
	}
	if _, err := s.write.Exec("ANALYZE"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, q, index string
		args           []any
	}{
		{"due", qDueManaged, "managed_renew_due", []any{1, 0, "", 10}},
		{"issuer", qIssuedElsewhere, "managed_issuer", []any{"int", "int"}},
		{"issuer update", strings.Replace(qIssuerDueBelow, "UPDATE managed SET renew_due = ?", "SELECT name FROM managed", 1), "managed_issuer", []any{"int", 0}},
		{"revocations", qDueRevocations, "managed_versions_revoke_due", []any{1, 0, "", 10}},
		{"keys", qDueKeys, "managed_keys_destroy_due", []any{1, 0, "", 10}},
		{"revoked hook", "SELECT name FROM managed WHERE serial = ? AND state = 'active' AND renew_due > ?", "managed_serial", []any{"x", 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan := queryPlan(t, s, tc.q, tc.args...)
			t.Logf("%s: %s", tc.name, plan)
			if !strings.Contains(plan, tc.index) || strings.Contains(plan, "SCAN managed ") || strings.HasSuffix(plan, "SCAN managed") {
				t.Errorf("plan %q, want a search of %s", plan, tc.index)
			}
		})
	}
}
