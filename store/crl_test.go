package store

import (
	"strings"
	"testing"
)

// TestCRLIndex checks that both halves of the CRL scan are index ranges and
// the main one never reads the table (the DER blobs).
func TestCRLIndex(t *testing.T) {
	t.Parallel()
	s := openTest(t, Config{})
	got := queryPlan(t, s, qRevokedCertificates, "int", 1, 0, "int", 0, 0, 1)
	for _, want := range []string{
		"USING COVERING INDEX certificates_crl (issuer_id=? AND crl_shard=? AND not_after>?)",
		"USING INDEX certificates_revoked (issuer_id=? AND revoked_at>?)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("query plan %q does not contain %q", got, want)
		}
	}
	if strings.Contains(got, "SCAN certificates") || strings.Contains(got, "TEMP B-TREE") {
		t.Errorf("query plan %q scans the table or sorts", got)
	}
}
