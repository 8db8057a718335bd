package ui_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
	"github.com/sigil-ca/sigil/ui"
)

// TestPages: search by SAN, the detail of a certificate (decoded fields,
// chain, requester token, events), a revoked one marked as such, the PEM
// download, the audit timeline and the verification page.
func TestPages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	web := e.issue(t, "web.example.com", "www.example.com")
	other := e.issue(t, "other.example.org")
	gone := e.issue(t, "gone.example.com")
	if _, err := e.auth.Revoke(context.Background(), ca.RevokeRequest{Serial: gone.Serial, Reason: 1, Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	b := e.browser(t)
	b.mustLogin(e.token(t, ca.RoleAuditor, 0))

	t.Run("search by SAN", func(t *testing.T) {
		r := b.get("/ui/certificates?name=www.example.com&status=")
		if r.StatusCode != http.StatusOK || !strings.Contains(r.body, web.Serial) || strings.Contains(r.body, other.Serial) {
			t.Errorf("search: %d, want %s and not %s:\n%s", r.StatusCode, web.Serial, other.Serial, r.body)
		}
		if !strings.Contains(r.body, `value="www.example.com"`) {
			t.Error("the form does not keep the query")
		}
	})
	t.Run("search revoked", func(t *testing.T) {
		r := b.get("/ui/certificates?status=revoked&issued_after=" + e.clk.Now().AddDate(0, 0, -23).Format(time.DateOnly))
		if !strings.Contains(r.body, gone.Serial) || strings.Contains(r.body, web.Serial) || !strings.Contains(r.body, "REVOKED") {
			t.Errorf("status=revoked:\n%s", r.body)
		}
	})
	t.Run("suffix and sort", func(t *testing.T) {
		// web and gone end in .example.com and have the same lifetime, so
		// web, issued first, also expires first.
		for sort, webFirst := range map[string]bool{"expiry_asc": true, "": false, "issued_asc": true} {
			r := b.get("/ui/certificates?name_suffix=.example.com&sort=" + sort)
			i, j := strings.Index(r.body, web.Serial), strings.Index(r.body, gone.Serial)
			if r.StatusCode != http.StatusOK || i < 0 || j < 0 || strings.Contains(r.body, other.Serial) || (i < j) != webFirst {
				t.Errorf("sort=%q: %d, web at %d, gone at %d\n%s", sort, r.StatusCode, i, j, r.body)
			}
			if sort != "" && !strings.Contains(r.body, `<option value="`+sort+`" selected>`) {
				t.Errorf("sort=%q not kept in the form", sort)
			}
		}
	})
	t.Run("bad filter", func(t *testing.T) {
		r := b.get("/ui/certificates?issued_after=yesterday")
		if r.StatusCode != http.StatusBadRequest || !strings.Contains(r.body, "issued_after must be") {
			t.Errorf("bad date: %d\n%s", r.StatusCode, r.body)
		}
	})
	t.Run("detail", func(t *testing.T) {
		r := b.get("/ui/certificates/" + web.Serial)
		for _, want := range []string{"web.example.com, www.example.com", "ECDSA P-256", "serverAuth", "digitalSignature",
			"intermediate", "root", "cert.issued", "Requested with token", "token:" + tokenID(e.admin), ">valid<", "SPKI SHA-256"} {
			if !strings.Contains(r.body, want) {
				t.Errorf("detail lacks %q", want)
			}
		}
		if strings.Contains(r.body, "Transparency log") {
			t.Error("transparency log shown without Config.Log")
		}
	})
	t.Run("revoked detail", func(t *testing.T) {
		r := b.get("/ui/certificates/" + gone.Serial)
		if !strings.Contains(r.body, `id="status">REVOKED<`) || !strings.Contains(r.body, "keyCompromise") || !strings.Contains(r.body, "cert.revoked") {
			t.Errorf("revoked certificate not marked:\n%s", r.body)
		}
	})
	t.Run("unknown serial", func(t *testing.T) {
		if r := b.get("/ui/certificates/abcdef"); r.StatusCode != http.StatusNotFound {
			t.Errorf("unknown serial: %d", r.StatusCode)
		}
		if r := b.get("/ui/certificates/not-hex"); r.StatusCode != http.StatusBadRequest {
			t.Errorf("bad serial: %d", r.StatusCode)
		}
	})
	t.Run("pem", func(t *testing.T) {
		r := b.get("/ui/certificates/" + web.Serial + "/pem")
		if r.StatusCode != http.StatusOK || r.Header.Get("Content-Type") != "application/pem-certificate-chain" ||
			!strings.Contains(r.Header.Get("Content-Disposition"), "attachment") {
			t.Fatalf("pem: %d %v", r.StatusCode, r.Header)
		}
		var certs []*x509.Certificate
		rest := []byte(r.body)
		for {
			var blk *pem.Block
			if blk, rest = pem.Decode(rest); blk == nil {
				break
			}
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			certs = append(certs, c)
		}
		if len(certs) != 3 {
			t.Fatalf("pem holds %d certificates, want leaf, intermediate, root", len(certs))
		}
		roots, inters := x509.NewCertPool(), x509.NewCertPool()
		roots.AddCert(certs[2])
		inters.AddCert(certs[1])
		if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: e.clk.Now(),
			DNSName: "www.example.com"}); err != nil {
			t.Errorf("downloaded chain does not verify: %v", err)
		}
	})
	t.Run("dashboard", func(t *testing.T) {
		r := b.get("/ui/")
		today, _, err := e.auth.Certificates(context.Background(), store.CertFilter{IssuedAfter: e.clk.Now().Truncate(24 * time.Hour), Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"<svg", fmt.Sprintf("%s: %d<", e.clk.Now().Format(time.DateOnly), len(today)), gone.Serial, "keyCompromise", "crl-publish", "Expiring soon"} {
			if !strings.Contains(r.body, want) {
				t.Errorf("dashboard lacks %q:\n%s", want, r.body)
			}
		}
	})
	t.Run("audit", func(t *testing.T) {
		r := b.get("/ui/audit")
		if !strings.Contains(r.body, "cert.issued") || !strings.Contains(r.body, "Showing events since "+e.clk.Now().AddDate(0, 0, -7).Format(time.DateOnly)) {
			t.Errorf("audit timeline:\n%s", r.body)
		}
		r = b.get("/ui/audit?action=cert.revoked&actor=&target=&after=&before=")
		if !strings.Contains(r.body, gone.Serial) || strings.Contains(r.body, ">cert.issued<") {
			t.Errorf("filtered timeline:\n%s", r.body)
		}
	})
	t.Run("verify", func(t *testing.T) {
		r := b.get("/ui/verify")
		if !strings.Contains(r.body, "The audit chain verifies.") || !strings.Contains(r.body, "certified by this CA") {
			t.Errorf("verify:\n%s", r.body)
		}
	})
}

// TestACMEOrderShown: a certificate issued over ACME names the order whose
// finalization recorded it.
func TestACMEOrderShown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	rec := e.issue(t, "acme.example.com")
	// Stand in for acme: the channel and the finalize event it records.
	err := e.st.WithTx(context.Background(), func(tx store.Tx) error {
		_, err := tx.AppendAudit(audit.Event{Time: e.clk.Now(), Actor: "acme:acct42", Action: "acme.order.finalized",
			Target: "order77", Detail: map[string]string{"serial": rec.Serial, "status": "valid", "endpoint": "internal"}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	e.reserve(t, ui.Config{VerifyAudit: func(context.Context) (ca.AuditReport, error) { return ca.AuditReport{}, nil }},
		channelAuthority{Authority: e.auth, serial: rec.Serial, channel: ca.ChannelACME})
	b := e.browser(t)
	b.mustLogin(e.admin)
	body := b.get("/ui/certificates/" + rec.Serial).body
	if !strings.Contains(body, "order77") || !strings.Contains(body, "acct42") {
		t.Errorf("ACME order not shown:\n%s", body)
	}
}

// channelAuthority reports one certificate as issued on another channel.
type channelAuthority struct {
	ui.Authority
	serial, channel string
}

func (c channelAuthority) Certificate(ctx context.Context, serial string) (store.CertRecord, error) {
	rec, err := c.Authority.Certificate(ctx, serial)
	if serial == c.serial {
		rec.Channel = c.channel
	}
	return rec, err
}

// brokenExport fails after part of the file went out.
type brokenExport struct{}

func (brokenExport) ExportCertificates(_ context.Context, w io.Writer, _ store.CertFilter, _ string) error {
	if _, err := w.Write([]byte(strings.Repeat("serial,sans\n", 20000))); err != nil {
		return err
	}
	return errors.New("store went away")
}

// TestExportCutShortAborts: a download that fails half-way must fail in the
// browser too, not end as a short file that looks complete.
func TestExportCutShortAborts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.reserve(t, ui.Config{Export: brokenExport{}, VerifyAudit: func(context.Context) (ca.AuditReport, error) { return ca.AuditReport{}, nil }}, e.auth)
	b := e.browser(t)
	b.mustLogin(e.admin)
	resp, err := b.client.Get(e.srv.URL + "/ui/export/certificates?format=csv")
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatal("a download cut short read as complete")
	}
}

// fakeExport writes a CSV of the serials the filter selects.
type fakeExport struct{ auth ui.Authority }

func (f fakeExport) ExportCertificates(ctx context.Context, w io.Writer, flt store.CertFilter, format string) error {
	if flt.Limit != 0 || !flt.After.IsZero() {
		return errors.New("export got a page, not a query")
	}
	flt.Limit = 1000
	recs, _, err := f.auth.Certificates(ctx, flt)
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "serial,sans")
	for _, r := range recs {
		fmt.Fprintf(w, "%s,%s\n", r.Serial, strings.Join(r.SANs, " "))
	}
	return nil
}

type fakeLog struct{}

func (fakeLog) InclusionStatus(_ context.Context, serial string) (ui.LogInclusion, error) {
	return ui.LogInclusion{Included: true, Verified: true, LeafIndex: 3, TreeSize: 9, RootHash: "abcd"}, nil
}

func (fakeLog) VerifyLog(context.Context) (ui.LogVerification, error) {
	return ui.LogVerification{OK: true, TreeSize: 9, RootHash: "abcd"}, nil
}

// TestExtensionPoints: export buttons and the transparency log appear only
// when configured, and the export streams the search's filters.
func TestExtensionPoints(t *testing.T) {
	t.Parallel()
	t.Run("absent", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, nil)
		b := e.browser(t)
		b.mustLogin(e.admin)
		if r := b.get("/ui/certificates"); strings.Contains(r.body, "export-csv") {
			t.Error("export buttons without Config.Export")
		}
		if r := b.get("/ui/export/certificates?format=csv"); r.StatusCode != http.StatusNotFound {
			t.Errorf("export without Config.Export: %d, want 404", r.StatusCode)
		}
		if r := b.get("/ui/verify"); strings.Contains(r.body, "log-verdict") {
			t.Error("log verification without Config.Log")
		}
	})
	t.Run("present", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, nil)
		e.reserve(t, ui.Config{Export: fakeExport{e.auth}, Log: fakeLog{},
			VerifyAudit: func(context.Context) (ca.AuditReport, error) {
				return ca.AuditReport{}, errors.New("event 7: hash mismatch")
			}}, e.auth)
		web := e.issue(t, "web.example.com")
		e.issue(t, "other.example.org")
		b := e.browser(t)
		b.mustLogin(e.admin)
		r := b.get("/ui/certificates?name=example.com")
		m := regexp.MustCompile(`id="export-csv" href="([^"]+)"`).FindStringSubmatch(r.body)
		if m == nil {
			t.Fatalf("no CSV button:\n%s", r.body)
		}
		link := strings.ReplaceAll(m[1], "&amp;", "&")
		if !strings.Contains(link, "name=example.com") {
			t.Errorf("export link %q drops the filter", link)
		}
		d := b.get(link)
		if d.StatusCode != http.StatusOK || !strings.HasPrefix(d.Header.Get("Content-Type"), "text/csv") ||
			!strings.Contains(d.Header.Get("Content-Disposition"), ".csv") || !strings.Contains(d.body, web.Serial+",web.example.com") ||
			strings.Contains(d.body, "other.example.org") {
			t.Errorf("export: %d %v\n%s", d.StatusCode, d.Header, d.body)
		}
		if r := b.get("/ui/export/certificates?format=xml"); r.StatusCode != http.StatusBadRequest {
			t.Errorf("bad format: %d", r.StatusCode)
		}
		if r := b.get("/ui/certificates/" + web.Serial); !strings.Contains(r.body, "inclusion proof verifies") {
			t.Error("detail lacks the inclusion proof status")
		}
		r = b.get("/ui/verify")
		if !strings.Contains(r.body, "The audit chain does NOT verify.") || !strings.Contains(r.body, "event 7: hash mismatch") ||
			!strings.Contains(r.body, "The log verifies.") {
			t.Errorf("verify page:\n%s", r.body)
		}
	})
}

// TestVerifyShared: page views within VerifyInterval share one run of the
// chain verification; a later view runs it again.
func TestVerifyShared(t *testing.T) {
	t.Parallel()
	runs := 0
	e := newEnv(t, nil)
	e.reserve(t, ui.Config{VerifyAudit: func(context.Context) (ca.AuditReport, error) {
		runs++
		return ca.AuditReport{Events: int64(runs)}, nil
	}}, e.auth)
	b := e.browser(t)
	b.mustLogin(e.admin)
	b.get("/ui/verify")
	b.get("/ui/verify")
	if runs != 1 {
		t.Errorf("%d runs for two views within the interval, want 1", runs)
	}
	e.clk.Advance(11e9)
	b.get("/ui/verify")
	if runs != 2 {
		t.Errorf("%d runs after the interval, want 2", runs)
	}
}

// TestTemplatesHaveNoScripts: nothing in the embedded templates needs the
// CSP loosened: no scripts, inline styles or event handler attributes.
func TestTemplatesHaveNoScripts(t *testing.T) {
	t.Parallel()
	bad := regexp.MustCompile(`(?i)<script|\sstyle=|<style|\son[a-z]+=|javascript:`)
	err := fs.WalkDir(os.DirFS("templates"), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile("templates/" + p)
		if err != nil {
			return err
		}
		if m := bad.Find(data); m != nil {
			t.Errorf("%s contains %q", p, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestSecurityHeaders: every response, public or not, carries the CSP and
// friends; only the stylesheet may be cached.
func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	b := e.browser(t)
	b.mustLogin(e.admin)
	for _, p := range []string{"/ui/login", "/ui/", "/ui/certificates", "/ui/audit", "/ui/verify", "/ui/nope", "/ui/static/ui.css"} {
		r := b.get(p)
		if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") ||
			!strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "unsafe") {
			t.Errorf("%s: CSP %q", p, csp)
		}
		if r.Header.Get("X-Content-Type-Options") != "nosniff" || r.Header.Get("Referrer-Policy") != "same-origin" {
			t.Errorf("%s: headers %v", p, r.Header)
		}
		wantCache := "no-store"
		if strings.HasPrefix(p, "/ui/static/") {
			wantCache = "public, max-age=300"
		}
		if got := r.Header.Get("Cache-Control"); got != wantCache {
			t.Errorf("%s: Cache-Control %q, want %q", p, got, wantCache)
		}
	}
	if r := b.get("/ui/nope"); r.StatusCode != http.StatusNotFound {
		t.Errorf("unknown page: %d", r.StatusCode)
	}
	big := url.Values{"csrf": {"x"}, "token": {strings.Repeat("a", 64<<10)}}
	if r := b.do("POST", "/ui/login", big); r.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("64 KiB login form: %d, want 413", r.StatusCode)
	}
}
