package main

// The auditor web page in a real browser: headless Chromium, driven over
// the DevTools protocol by chromedp, against `sigil serve`.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/csv"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/sigil-ca/sigil/api"
)

// e2eChromium finds the system browser. CI installs it (.ci/run), so there
// its absence fails the test; elsewhere the test skips, loudly.
func e2eChromium(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped under -short: runs chromium as a child process")
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed; .ci/run installs the Debian package chromium")
	}
	t.Skip("!!!!! SKIPPING the browser test: chromium is not on PATH (apt-get install chromium) !!!!!")
	return ""
}

// e2eSPKIPins connects to the test's own listener, checks its certificate
// against the CA's root, and returns the Chromium flag value that accepts
// exactly that certificate's key: the browser trusts this server without
// certificate checks being turned off. (Chromium matches the pins against
// the certificate it is shown; the test root is not in its trust store.)
func e2eSPKIPins(t *testing.T, c *caDir, httpsURL string) string {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(e2eReadRoot(t, c))
	conn, err := tls.Dial("tcp", strings.TrimPrefix(httpsURL, "https://"), &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("TLS to the test server: %v", err)
	}
	defer conn.Close()
	var pins []string
	for _, cert := range conn.ConnectionState().PeerCertificates {
		sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
		pins = append(pins, base64.StdEncoding.EncodeToString(sum[:]))
	}
	return strings.Join(pins, ",")
}

// e2eArtifactDir is where the browser test keeps its screenshot:
// $SIGIL_TEST_ARTIFACTS if set (CI uploads it), else the test's temp dir.
func e2eArtifactDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("SIGIL_TEST_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// e2eUILog is the web page's lines of the server log.
func e2eUILog(p *serverProc) string {
	var out []string
	for _, l := range strings.Split(p.stderr.String(), "\n") {
		if strings.Contains(l, "ui") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// e2ePageState describes where the browser is, for failure messages.
func e2ePageState(bctx context.Context) string {
	ctx, cancel := context.WithTimeout(bctx, 5*time.Second)
	defer cancel()
	state, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href + "\n" + (document.body ? document.body.innerText.slice(0, 2000) : "")`))
	if err != nil {
		return "unknown: " + err.Error()
	}
	return state
}

// e2eDownload clicks sel and returns the file Chromium saves in dir (the
// download behaviour set by the test names files by their GUID).
func e2eDownload(ctx context.Context, dir, sel string) ([]byte, error) {
	progress := chromedp.Events(ctx, browser.DownloadProgress) // subscribe before the click
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(sel))); err != nil {
		return nil, fmt.Errorf("click %s: %w", sel, err)
	}
	for ev, err := range progress {
		if err != nil {
			return nil, fmt.Errorf("download from %s: %w", sel, err)
		}
		switch ev.State {
		case browser.DownloadProgressStateCompleted:
			return os.ReadFile(filepath.Join(dir, ev.GUID))
		case browser.DownloadProgressStateCanceled:
			return nil, fmt.Errorf("download from %s canceled", sel)
		}
	}
	return nil, fmt.Errorf("download from %s: no progress", sel)
}

// TestE2EAuditorBrowser: an auditor, in a real browser, logs in, searches
// by SAN, exports the search as CSV, opens a certificate and downloads it,
// sees a revoked certificate marked as such, is refused a state-changing request, checks the audit chain, and
// leaves a screenshot behind; every page it opened is in the audit log.
func TestE2EAuditorBrowser(t *testing.T) {
	inProcess(t)
	chromium := e2eChromium(t)
	c := initCA(t)
	p := startServe(t, c)
	shop := e2eIssueSAN(t, p, c, "tls-server", "shop.example.com")
	gone := e2eIssueSAN(t, p, c, "tls-server", "gone.example.com")
	e2eRun(t, e2eAdmin(p, c, "cert", "revoke", e2eSerial(gone[0]), "--reason", "keyCompromise")...)
	// A tree head covering both, so that the detail page can prove inclusion.
	e2eRun(t, e2eAdmin(p, c, "jobs", "run", "log-sign", "--wait")...)
	out, _ := e2eRun(t, e2eAdmin(p, c, "token", "create", "--role", "auditor", "--description", "browser test")...)
	auditor := e2eTokenRe.FindString(out)
	if auditor == "" {
		t.Fatalf("token create printed no token:\n%s", out)
	}
	auditorID, _, _ := strings.Cut(strings.TrimPrefix(auditor, "sigil_"), "_")

	dlDir := t.TempDir()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.Flag("ignore-certificate-errors-spki-list", e2eSPKIPins(t, c, p.httpsURL)),
		chromedp.NoSandbox, // containers run the test as root, where Chromium's sandbox cannot start
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 1000),
	)...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	defer cancelBrowser()
	// The first call starts the browser, whose life is bound to the
	// context of that call: not to the timeout below.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancel := context.WithTimeout(bctx, 2*time.Minute)
	defer cancel()

	base := p.httpsURL
	do := func(step string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v (page: %s)\nserver log:\n%s", step, err, e2ePageState(bctx), e2eUILog(p))
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	do("download behaviour", chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
			Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: dlDir, EventsEnabled: new(true)})
		return err
	}))

	// Log in: /ui/ sends an anonymous visitor to the form.
	do("log in",
		chromedp.Navigate(base+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), auditor),
		chromedp.Click(chromedp.CSS(`section.login button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("svg.chart")),
	)
	if who := text("span.who"); !strings.Contains(who, "token:"+auditorID) || !strings.Contains(who, "auditor") {
		t.Errorf("logged-in banner %q, want the auditor token", who)
	}

	// Search by SAN, with the form.
	do("search form",
		chromedp.Click(chromedp.CSS(`nav a[href="/ui/certificates"]`)),
		chromedp.WaitVisible(chromedp.CSS(`input[name="name"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name="name"]`), "shop.example.com"),
	)
	// The unfiltered page has a results table too: wait for the page that
	// answers the search to load.
	loaded := chromedp.Events(ctx, page.LoadEventFired)
	do("search", chromedp.Click(chromedp.CSS(`form.filters button[type="submit"]`)))
	for _, err := range loaded {
		if err != nil {
			t.Fatalf("search: %v", err)
		}
		break
	}
	if u := e2ePageState(bctx); !strings.Contains(u, "name=shop.example.com") {
		t.Fatalf("search did not load its results: %s", u)
	}
	if got := text("table.results"); !strings.Contains(got, e2eSerial(shop[0])) || strings.Contains(got, e2eSerial(gone[0])) {
		t.Errorf("search for shop.example.com shows:\n%s", got)
	}

	// Export the search as CSV: the browser downloads the file the button
	// links to, with the session cookie, and it holds the searched
	// certificate (neutralised for spreadsheets, columns as the API's).
	exportButtons, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#export-csv").length`))
	if err != nil {
		t.Fatal(err)
	}
	if exportButtons != 1 {
		t.Fatalf("the search page shows %d CSV export buttons, want 1 (server log:\n%s)", exportButtons, e2eUILog(p))
	}
	csvData, err := e2eDownload(ctx, dlDir, "#export-csv")
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(bytes.NewReader(csvData)).ReadAll()
	if err != nil {
		t.Fatalf("CSV export of the search: %v\n%s", err, csvData)
	}
	if len(rows) != 2 || !slices.Equal(rows[0], api.CertCSVHeader) || rows[1][0] != e2eSerial(shop[0]) ||
		rows[1][3] != "shop.example.com" || rows[1][11] != "valid" {
		t.Errorf("CSV export of the search for shop.example.com (want the header and %s):\n%s", e2eSerial(shop[0]), csvData)
	}
	// Open the certificate and download it with its chain.
	do("detail",
		chromedp.Click(chromedp.CSS(`a[href="/ui/certificates/`+e2eSerial(shop[0])+`"]`)),
		chromedp.WaitVisible(chromedp.CSS("#status")),
	)
	if status, main := text("#status"), text("main"); status != "valid" || !strings.Contains(main, "shop.example.com") || !strings.Contains(main, "cert.issued") {
		t.Errorf("detail of %s: status %q\n%s", e2eSerial(shop[0]), status, main)
	}
	if main := text("main"); !strings.Contains(main, "inclusion proof verifies") {
		t.Errorf("detail of %s does not show a verified log inclusion proof:\n%s", e2eSerial(shop[0]), main)
	}
	pemData, err := e2eDownload(ctx, dlDir, "#pem")
	if err != nil {
		t.Fatal(err)
	}
	if chain := e2eParseChain(t, pemData); len(chain) != 3 || !chain[0].Equal(shop[0]) {
		t.Errorf("downloaded PEM holds %d certificates, want the leaf and its chain to the root", len(chain))
	}

	// The revoked certificate is marked as such.
	do("revoked",
		chromedp.Navigate(base+"/ui/certificates?status=revoked"),
		chromedp.WaitVisible(chromedp.CSS("table.results")),
		chromedp.Click(chromedp.CSS(`a[href="/ui/certificates/`+e2eSerial(gone[0])+`"]`)),
		chromedp.WaitVisible(chromedp.CSS("#status")),
	)
	if status, alert := text("#status"), text("p.alert.revoked"); status != "REVOKED" || !strings.Contains(alert, "keyCompromise") {
		t.Errorf("revoked certificate shows %q, %q", status, alert)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100 is PNG; below it, JPEG
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	shot := filepath.Join(e2eArtifactDir(t), "auditor-revoked-certificate.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", shot, len(png))

	// A state-changing request from the logged-in page: the page has no
	// such form, so the test writes one (through DevTools: the CSP lets no
	// page script run) and submits it with the session's CSRF token.
	do("state change",
		chromedp.Evaluate[chromedp.Void](`(() => {
			const f = document.createElement("form");
			f.method = "post";
			f.action = "/ui/certificates/`+e2eSerial(shop[0])+`";
			for (const [k, v] of [["csrf", document.querySelector('input[name="csrf"]').value], ["action", "revoke"], ["reason", "keyCompromise"]]) {
				const i = document.createElement("input");
				i.type = "hidden"; i.name = k; i.value = v; f.appendChild(i);
			}
			document.body.appendChild(f);
			f.submit();
		})()`),
		chromedp.WaitVisible(chromedp.CSS("section.error")),
	)
	if got := text("section.error"); !strings.Contains(got, "403") || !strings.Contains(got, "read-only") {
		t.Errorf("state-changing POST shows:\n%s", got)
	}
	if got := e2eListCerts(t, p, c, "--serial", e2eSerial(shop[0])); len(got) != 1 || got[0].Status != "valid" {
		t.Errorf("after the refused request the certificate is %+v, want valid", got)
	}
	// The API refuses the auditor's token just the same.
	client := c.httpClient(t)
	req, _ := http.NewRequest("POST", base+"/v1/revoke", strings.NewReader(`{"serial":"`+e2eSerial(shop[0])+`","reason":"keyCompromise"}`))
	req.Header.Set("Authorization", "Bearer "+auditor)
	req.Header.Set("Content-Type", "application/json")
	if resp, err := client.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("auditor POST /v1/revoke: %v %v, want 403", resp, err)
	} else {
		resp.Body.Close()
	}

	// The audit chain verifies, then log out.
	do("verify",
		chromedp.Navigate(base+"/ui/verify"),
		chromedp.WaitVisible(chromedp.CSS("#audit-verdict")),
	)
	if got := text("#audit-verdict"); got != "The audit chain verifies." {
		t.Errorf("verify page: %q", got)
	}
	if got := text("#log-verdict"); got != "The log verifies." {
		t.Errorf("verify page, transparency log: %q", got)
	}
	do("log out",
		chromedp.Click(chromedp.CSS(`form.logout button`)),
		chromedp.WaitVisible(chromedp.CSS("#token")),
	)

	// Who looked at what: every view above is an audit.read event.
	reads := e2eListAudit(t, p, c, "--action", "audit.read", "--actor", "token:"+auditorID)
	seen := map[string]bool{}
	for _, ev := range reads {
		seen[ev.Detail["path"]+"?"+ev.Detail["query"]] = true
	}
	for _, want := range []string{"/ui/?", "/ui/certificates?", "/ui/certificates/" + e2eSerial(shop[0]) + "?",
		"/ui/certificates/" + e2eSerial(shop[0]) + "/pem?", "/ui/export/certificates?", "/ui/certificates?status=revoked", "/ui/verify?"} {
		found := false
		for k := range seen {
			if strings.HasPrefix(k, want) {
				found = true
			}
		}
		if !found {
			t.Errorf("no audit.read event for %s; got %v", want, seen)
		}
	}
	refused := e2eListAudit(t, p, c, "--action", "access.refused", "--actor", "token:"+auditorID)
	if len(refused) != 2 {
		t.Errorf("%d access.refused events for the auditor, want 2 (page and API)", len(refused))
	}
	for _, a := range []string{"ui.login", "ui.logout"} {
		if evs := e2eListAudit(t, p, c, "--action", a, "--actor", "token:"+auditorID); len(evs) != 1 {
			t.Errorf("%d %s events, want 1", len(evs), a)
		}
	}
}
