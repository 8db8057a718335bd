package store

import (
	"strings"
	"testing"
)

// TestTidyIndexes: the hot paths and tidy read partial indexes of live
// certificates, never the whole table, and never sort.
func TestTidyIndexes(t *testing.T) {
	t.Parallel()
	s := openTest(t, Config{})
	for _, c := range []struct {
		q    string
		args []any
		want []string
	}{
		{qCertStatuses, []any{"int", 0, 0, 1000}, []string{"certificates_live (issuer_id=? AND id>?)"}},
		{qArchiveCertificates, []any{1, 0, 10}, []string{"certificates_live_expiry (not_after<?)"}},
		{qExpiringCertificates, []any{0, 1, 0, 0, 0, 10}, []string{"certificates_live_expiry (not_after>? AND not_after<?)",
			"certificates_replaces (replaces=?)", "sqlite_autoindex_expiry_notices_1 (issuer_id=? AND serial=?)"}},
		{purgeQueries[ExpiredACMEOrders][0], []any{0, 10}, []string{"acme_orders_expires (expires<?)"}},
		{purgeQueries[ExpiredACMEAuthzs][0], []any{0, 10}, []string{"acme_authzs_expires (expires<?)", "acme_challenges USING COVERING INDEX"}},
		{purgeQueries[ExpiredACMEAuthzs][1], []any{0, 10}, []string{"acme_authzs_expires (expires<?)"}},
		{purgeQueries[ExpiredNonces][0], []any{0, 10}, []string{"acme_nonces_expires (expires<?)"}},
		{purgeQueries[ExpiredOCSPResponses][0], []any{0, 10}, []string{"ocsp_responses_next_update (next_update<?)"}},
		{purgeQueries[ExpiredNotices][0], []any{0, 10}, []string{"expiry_notices_not_after (not_after<?)"}},
	} {
		got := queryPlan(t, s, c.q, c.args...)
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("plan of %.60q…: %q lacks %q", c.q, got, w)
			}
		}
		if strings.Contains(got, "SCAN") || strings.Contains(got, "TEMP B-TREE") {
			t.Errorf("plan of %.60q…: %q scans or sorts", c.q, got)
		}
	}
}
