package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/internal/testclock"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/store"
)

// exportNDJSON decodes an NDJSON export strictly, line by line.
func exportNDJSON(t *testing.T, data []byte) []api.Certificate {
	t.Helper()
	var out []api.Certificate
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var c api.Certificate
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			t.Fatalf("NDJSON line %q: %v", sc.Text(), err)
		}
		out = append(out, c)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func exportCSV(t *testing.T, data []byte) [][]string {
	t.Helper()
	recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		t.Fatalf("CSV export: %v\n%s", err, data)
	}
	if len(recs) == 0 || !slices.Equal(recs[0], api.CertCSVHeader) {
		t.Fatalf("CSV export header %v, want %v", recs, api.CertCSVHeader)
	}
	return recs[1:]
}

// export GETs /v1/certificates/export?query and requires a 200 download.
func (e *testEnv) export(t *testing.T, token, query string) (*http.Response, []byte) {
	t.Helper()
	resp, data := e.do(t, "GET", "/v1/certificates/export?"+query, token, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("export %q: status %d: %s", query, resp.StatusCode, data)
	}
	if cd := resp.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, `attachment; filename="certificates-`) {
		t.Errorf("export %q: Content-Disposition %q", query, cd)
	}
	return resp, data
}

// sortedSerials is the serials of certs, sorted; nil for none.
func sortedSerials(certs []api.Certificate) []string {
	var out []string
	for _, c := range certs {
		out = append(out, c.Serial)
	}
	slices.Sort(out)
	return out
}

func sorted(s ...string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestCertExport: the export endpoint streams what the list endpoint
// pages, with the same filters, as NDJSON (full records, PEM included) or
// CSV; issuers see their own certificates only; auditors may export, and
// the read is audited.
func TestCertExport(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	issuer, issuerID := e.createToken(t, ca.RoleIssuer, "tls-server")
	auditor, auditorID := e.createToken(t, ca.RoleAuditor)
	a := e.sign(t, e.admin, "tls-server", "a.export.example", "www.a.export.example")
	b := e.sign(t, e.admin, "tls-server", "b.export.example")
	mine := e.sign(t, issuer, "tls-server", "mine.export.example")
	e.revoke(t, e.admin, api.RevokeRequest{Serial: b.Serial, Reason: []byte(`"keyCompromise"`)})
	all := sorted(a.Serial, b.Serial, mine.Serial)
	// Init issued certificates of its own (channel init, internal): the
	// queries below select the test's by name.
	const ours = "name_suffix=.export.example"

	t.Run("ndjson", func(t *testing.T) {
		resp, data := e.export(t, e.admin, "format=ndjson&"+ours)
		if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
			t.Errorf("Content-Type %q", ct)
		}
		if got := resp.Header.Get("X-Total-Count"); got != "3" {
			t.Errorf("X-Total-Count %q, want 3", got)
		}
		certs := exportNDJSON(t, data)
		if got := sortedSerials(certs); !slices.Equal(got, all) {
			t.Fatalf("exported %v, want %v", got, all)
		}
		for _, c := range certs {
			if blocks := pemBlocks(t, c.PEM); len(blocks) != 1 {
				t.Errorf("%s: %d PEM blocks, want the certificate", c.Serial, len(blocks))
			}
			want := e.cert(t, c.Serial)
			want.PEM = c.PEM
			if mustJSON(t, c) != mustJSON(t, want) {
				t.Errorf("export line differs from GET /v1/certificates/%s:\n%s\n%s", c.Serial, mustJSON(t, c), mustJSON(t, want))
			}
		}
	})

	t.Run("default format is ndjson", func(t *testing.T) {
		resp, data := e.export(t, e.admin, "")
		listed := []string{}
		for _, c := range e.certs(t, e.admin) {
			listed = append(listed, c.Serial)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
			t.Errorf("Content-Type %q", ct)
		}
		if got := sortedSerials(exportNDJSON(t, data)); !slices.Equal(got, sorted(listed...)) {
			t.Errorf("unfiltered export %v, GET /v1/certificates lists %v", got, listed)
		}
	})

	t.Run("csv", func(t *testing.T) {
		resp, data := e.export(t, e.admin, "format=csv&sort=issued_asc&"+ours)
		if ct := resp.Header.Get("Content-Type"); ct != "text/csv; charset=utf-8" {
			t.Errorf("Content-Type %q", ct)
		}
		rows := exportCSV(t, data)
		if len(rows) != 3 {
			t.Fatalf("%d rows, want 3", len(rows))
		}
		want := [][2]string{{a.Serial, "valid"}, {b.Serial, "revoked"}, {mine.Serial, "valid"}}
		for i, r := range rows {
			if r[0] != want[i][0] || r[11] != want[i][1] {
				t.Errorf("row %d: serial %s status %s, want %v", i, r[0], r[11], want[i])
			}
		}
		if got := rows[0][3]; got != "a.export.example www.a.export.example" {
			t.Errorf("sans cell %q, want space-separated", got)
		}
		if rows[1][12] == "" || rows[1][13] != "keyCompromise" || rows[0][12] != "" || rows[0][13] != "" {
			t.Errorf("revocation cells: %v / %v", rows[0][12:], rows[1][12:])
		}
		if _, err := time.Parse(time.RFC3339, rows[0][5]); err != nil {
			t.Errorf("not_after %q: %v", rows[0][5], err)
		}
	})

	filters := []struct {
		name, query string
		want        []string
	}{
		{"name", "name=a.export", []string{a.Serial}},
		{"name suffix", "name_suffix=.export.example", all},
		{"status revoked", "status=revoked", []string{b.Serial}},
		{"status valid", "status=valid&" + ours, sorted(a.Serial, mine.Serial)},
		{"channel", "channel=api&sort=expiry_desc", all},
		{"requester", "requester=token:" + issuerID, []string{mine.Serial}},
		{"serial", "serial=" + strings.ToUpper(b.Serial), []string{b.Serial}},
		{"issued before", "issued_before=2000-01-01T00:00:00Z", nil},
	}
	for _, tc := range filters {
		t.Run("filter "+tc.name, func(t *testing.T) {
			resp, data := e.export(t, e.admin, "format=ndjson&"+tc.query)
			if got := sortedSerials(exportNDJSON(t, data)); !slices.Equal(got, tc.want) {
				t.Errorf("%s: exported %v, want %v", tc.query, got, tc.want)
			}
			if got := resp.Header.Get("X-Total-Count"); got != fmt.Sprint(len(tc.want)) {
				t.Errorf("%s: X-Total-Count %q, want %d", tc.query, got, len(tc.want))
			}
		})
	}

	t.Run("empty csv has the header", func(t *testing.T) {
		_, data := e.export(t, e.admin, "format=csv&name=nothing.matches")
		if rows := exportCSV(t, data); len(rows) != 0 {
			t.Errorf("rows %v", rows)
		}
	})

	t.Run("issuer sees its own", func(t *testing.T) {
		// Unfiltered, or asking for someone else's: its own, as the list.
		for _, q := range []string{"format=ndjson", "format=ndjson&requester=token:" + e.adminID} {
			_, data := e.export(t, issuer, q)
			if got := sortedSerials(exportNDJSON(t, data)); !slices.Equal(got, []string{mine.Serial}) {
				t.Errorf("issuer export %q: %v, want only %s", q, got, mine.Serial)
			}
		}
	})

	t.Run("auditor", func(t *testing.T) {
		_, data := e.export(t, auditor, "format=csv&status=valid&"+ours)
		if rows := exportCSV(t, data); len(rows) != 2 {
			t.Errorf("auditor CSV: %d rows, want 2", len(rows))
		}
		reads := e.audit(t, "action=audit.read&actor=token:"+auditorID)
		if len(reads) == 0 || reads[len(reads)-1].Detail["path"] != "/v1/certificates/export" ||
			reads[len(reads)-1].Detail["query"] != "format=csv&status=valid&"+ours {
			t.Errorf("auditor export not audited: %+v", reads)
		}
	})

	bad := []struct{ name, query, detail string }{
		{"bad format", "format=xlsx", "format must be"},
		{"format twice", "format=csv&format=ndjson", "more than once"},
		{"unknown parameter", "format=csv&nmae=a", `unknown query parameter "nmae"`},
		{"cursor", "format=csv&cursor=abc", "no cursor"},
		{"limit", "format=csv&limit=10", "no limit"},
		{"bad status", "format=csv&status=gone", "unknown status"},
		{"bad time", "format=ndjson&issued_after=yesterday", "RFC 3339"},
		{"bad sort", "format=ndjson&sort=random", "unknown sort"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			resp, data := e.do(t, "GET", "/v1/certificates/export?"+tc.query, e.admin, nil)
			got := checkError(t, resp, data, http.StatusBadRequest, ca.Malformed.String())
			if !strings.Contains(got.Detail, tc.detail) {
				t.Errorf("detail %q, want %q", got.Detail, tc.detail)
			}
			if cd := resp.Header.Get("Content-Disposition"); cd != "" {
				t.Errorf("an error is not a download: Content-Disposition %q", cd)
			}
		})
	}

	t.Run("no token", func(t *testing.T) {
		resp, data := e.do(t, "GET", "/v1/certificates/export", "", nil)
		checkError(t, resp, data, http.StatusUnauthorized, ca.Unauthorized.String())
	})
}

// TestWriteCertExport: the writer on its own: CSV cells a spreadsheet
// would evaluate are neutralised, nothing is written when the scan fails
// before its first row, and an unknown format never starts the scan.
func TestWriteCertExport(t *testing.T) {
	t.Parallel()
	now := testclock.Start()
	rec := func(i int) store.CertRecord {
		return store.CertRecord{Serial: fmt.Sprintf("%x", i+1), IssuerID: "int-1", Subject: "CN=host", SANs: []string{"host.example"},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), Created: now.Add(-time.Hour), Requester: "token:x",
			Channel: "api", Profile: "tls-server", KeyAlgorithm: "ECDSA-P256"}
	}
	scanOf := func(recs ...store.CertRecord) func(func(store.CertRecord) error) error {
		return func(fn func(store.CertRecord) error) error {
			for _, r := range recs {
				if err := fn(r); err != nil {
					return err
				}
			}
			return nil
		}
	}

	t.Run("csv injection", func(t *testing.T) {
		r := rec(0)
		r.Subject = `=HYPERLINK("http://evil.example","x")`
		r.SANs = []string{"-2+3", "@SUM(A1)"}
		r.Requester = "+cmd|' /C calc'!A0"
		r.Profile = "\tnested"
		r.Channel = "safe=ok"
		var buf bytes.Buffer
		if err := api.WriteCertExport(&buf, "csv", scanOf(r), now); err != nil {
			t.Fatal(err)
		}
		rows := exportCSV(t, buf.Bytes())
		if len(rows) != 1 {
			t.Fatalf("%d rows", len(rows))
		}
		for _, c := range []struct{ col, want string }{
			{"subject", `'=HYPERLINK("http://evil.example","x")`},
			{"sans", "'-2+3 @SUM(A1)"},
			{"requester", "'+cmd|' /C calc'!A0"},
			{"profile", "'\tnested"},
			{"channel", "safe=ok"},
			{"serial", "1"},
		} {
			if got := rows[0][slices.Index(api.CertCSVHeader, c.col)]; got != c.want {
				t.Errorf("%s cell %q, want %q", c.col, got, c.want)
			}
		}
	})

	t.Run("failure before the first row writes nothing", func(t *testing.T) {
		for _, format := range []string{"csv", "ndjson"} {
			var buf bytes.Buffer
			refused := &ca.Error{Kind: ca.Malformed, Detail: "bad filter"}
			err := api.WriteCertExport(&buf, format, func(func(store.CertRecord) error) error { return refused }, now)
			if !errors.Is(err, refused) || buf.Len() != 0 {
				t.Errorf("%s: error %v, %d bytes written", format, err, buf.Len())
			}
		}
	})

	t.Run("unknown format", func(t *testing.T) {
		var buf bytes.Buffer
		called := false
		err := api.WriteCertExport(&buf, "xml", func(func(store.CertRecord) error) error { called = true; return nil }, now)
		if ca.KindOf(err) != ca.Malformed || called || buf.Len() != 0 {
			t.Errorf("error %v, scan called %v, %d bytes", err, called, buf.Len())
		}
	})

	t.Run("flushes as it goes", func(t *testing.T) {
		fw := &flushCounter{}
		recs := make([]store.CertRecord, 2500)
		for i := range recs {
			recs[i] = rec(i)
		}
		if err := api.WriteCertExport(fw, "ndjson", scanOf(recs...), now); err != nil {
			t.Fatal(err)
		}
		if fw.flushes != 2 {
			t.Errorf("%d flushes for 2500 rows, want 2 (one per 1000)", fw.flushes)
		}
		if got := exportNDJSON(t, fw.Bytes()); len(got) != 2500 || got[2499].Serial != "9c4" || got[0].Status != "valid" {
			t.Errorf("%d rows", len(got))
		}
	})
}

type flushCounter struct {
	bytes.Buffer
	flushes int
}

func (f *flushCounter) Flush() error {
	f.flushes++
	return nil
}

// failingScan is an authority whose certificate scan breaks after rows
// records, as a store failing mid-export would.
type failingScan struct {
	*ca.Authority
	rows int
}

func (f failingScan) ScanCertificates(ctx context.Context, flt store.CertFilter, fn func(store.CertRecord) error) error {
	return f.Authority.ScanCertificates(ctx, store.CertFilter{Now: flt.Now}, func(c store.CertRecord) error {
		for range f.rows {
			if err := fn(c); err != nil {
				return err
			}
		}
		return errors.New("disk on fire")
	})
}

// TestCertExportCutShort: an export that fails after rows were sent is
// aborted, so the client sees a broken body, never a complete-looking
// short file; the failure is logged.
func TestCertExportCutShort(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h, err := api.New(api.Config{Logger: slog.New(slog.NewJSONHandler(e.logs, nil)), Clock: e.clk}, failingScan{e.auth, 2500}, e.auth.Access())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(h.Handler())
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/v1/certificates/export?format=ndjson", nil)
	req.Header.Set("Authorization", "Bearer "+e.admin)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	data, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatalf("an export cut short read as complete (%d bytes)", len(data))
	}
	if n := bytes.Count(data, []byte("\n")); n < 1000 {
		t.Errorf("%d rows arrived before the break, want the first flushes", n)
	}
	if !strings.Contains(e.logs.String(), "disk on fire") {
		t.Errorf("the failure is not logged:\n%s", e.logs.String())
	}
}
