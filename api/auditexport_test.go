package api_test

import (
	"bytes"
	"crypto/x509"
	"encoding/csv"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/audit"
)

func TestAuditExport(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.sign(t, e.admin, "tls-server", "before.example")
	e.clk.Advance(time.Hour)
	since := e.clk.Now()
	e.sign(t, e.admin, "tls-server", "after1.example")
	e.sign(t, e.admin, "tls-server", "after2.example")
	auditor, _ := e.createToken(t, ca.RoleAuditor)
	issuer, _ := e.createToken(t, ca.RoleIssuer, "tls-server")
	roots := x509.NewCertPool()
	roots.AddCert(e.root)

	verify := func(t *testing.T, body []byte) audit.ExportSummary {
		t.Helper()
		sum, err := audit.VerifyExport(bytes.NewReader(body), roots)
		if err != nil {
			t.Fatalf("VerifyExport: %v", err)
		}
		return sum
	}

	t.Run("ndjson", func(t *testing.T) {
		for _, tok := range []string{e.admin, auditor} {
			resp, body := e.do(t, "GET", "/v1/audit/export", tok, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
				t.Errorf("Content-Type %q", ct)
			}
			if cd := resp.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, `attachment; filename="sigil-audit-`) || !strings.HasSuffix(cd, `.ndjson"`) {
				t.Errorf("Content-Disposition %q", cd)
			}
			sum := verify(t, body)
			if sum.FirstSeq != 1 || sum.Events < 5 || strconv.FormatInt(sum.Events, 10) != resp.Header.Get(api.AuditEventsHeader) {
				t.Errorf("summary %+v, %s %q", sum, api.AuditEventsHeader, resp.Header.Get(api.AuditEventsHeader))
			}
			if sum.CA != "API Test CA Root" || len(sum.Signers) != 1 || !strings.HasSuffix(sum.Signers[0].Subject.CommonName, "Audit Signer") {
				t.Errorf("CA %q signers %v", sum.CA, sum.Signers)
			}
		}
	})

	t.Run("since mid-chain", func(t *testing.T) {
		resp, body := e.do(t, "GET", "/v1/audit/export?since="+url.QueryEscape(since.Format(time.RFC3339)), auditor, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		sum := verify(t, body)
		if sum.FirstSeq <= 1 || !sum.Since.Equal(since) {
			t.Errorf("summary %+v, want a mid-chain export since %s", sum, since)
		}
		first := e.audit(t, "after="+url.QueryEscape(since.Format(time.RFC3339)))
		if len(first) == 0 || first[0].Seq != sum.FirstSeq {
			t.Errorf("export starts at %d, want the first event since", sum.FirstSeq)
		}
	})

	t.Run("since the future", func(t *testing.T) {
		resp, body := e.do(t, "GET", "/v1/audit/export?since=2100-01-01T00:00:00Z", e.admin, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		if sum := verify(t, body); sum.Events != 0 {
			t.Errorf("summary %+v, want an empty export", sum)
		}
	})

	t.Run("csv", func(t *testing.T) {
		resp, body := e.do(t, "GET", "/v1/audit/export?format=csv", auditor, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "text/csv; charset=utf-8" {
			t.Errorf("Content-Type %q", ct)
		}
		rows, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(rows[0], ","); got != "seq,time,actor,action,target,detail,hash" {
			t.Errorf("header %q", got)
		}
		if strconv.Itoa(len(rows)-1) != resp.Header.Get(api.AuditEventsHeader) {
			t.Errorf("%d rows, %s %q", len(rows)-1, api.AuditEventsHeader, resp.Header.Get(api.AuditEventsHeader))
		}
		for i, row := range rows[1:] {
			if row[0] != strconv.Itoa(i+1) || len(row[6]) != 64 || !strings.HasPrefix(row[5], "{") {
				t.Errorf("row %d: %q", i+1, row)
			}
		}
	})

	t.Run("refused", func(t *testing.T) {
		for _, tc := range []struct {
			name, token, query string
			want               int
		}{
			{"issuer", issuer, "", http.StatusForbidden},
			{"no token", "", "", http.StatusUnauthorized},
			{"bad since", e.admin, "?since=yesterday", http.StatusBadRequest},
			{"bad format", e.admin, "?format=xml", http.StatusBadRequest},
			{"unknown parameter", e.admin, "?until=2026-01-01T00:00:00Z", http.StatusBadRequest},
		} {
			resp, body := e.do(t, "GET", "/v1/audit/export"+tc.query, tc.token, nil)
			if resp.StatusCode != tc.want || !strings.Contains(resp.Header.Get("Content-Type"), "application/json") {
				t.Errorf("%s: %d %s, want %d and a JSON error", tc.name, resp.StatusCode, body, tc.want)
			}
		}
	})
}
