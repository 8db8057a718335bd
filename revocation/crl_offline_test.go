package revocation

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/store"
)

// logBuffer collects log lines from any goroutine.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// take returns what was logged since the last take.
func (b *logBuffer) take() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.String()
	b.buf.Reset()
	return s
}

func gaugeValue(t testing.TB, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

// newOffline returns OfflineCRLs for the root of e, logging to the returned buffer.
func (e *testEnv) newOffline(t testing.TB, issuers ...string) (*OfflineCRLs, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	if issuers == nil {
		issuers = []string{e.auth.Root().ID}
	}
	o, err := NewOfflineCRLs(OfflineConfig{Issuers: issuers, Clock: e.clk, Logger: slog.New(slog.NewTextHandler(logs, nil))}, e.st)
	if err != nil {
		t.Fatalf("NewOfflineCRLs: %v", err)
	}
	return o, logs
}

// signRoot signs the root's next CRL as sigil ca root-crl does.
func (e *testEnv) signRoot(t testing.TB, validity time.Duration) store.CRLRecord {
	t.Helper()
	out, err := ca.SignRootCRL(context.Background(), e.st, e.ks, ca.RootCRLConfig{Validity: validity, Clock: e.clk})
	if err != nil {
		t.Fatalf("SignRootCRL: %v", err)
	}
	return out.Record
}

// TestOfflineCRLServe: the root's CRL, stored by Init, is served at the
// intermediate's CDP with the headers of every CRL; other CRL requests reach
// the publisher.
func TestOfflineCRLServe(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newTestEnv(t, 0)
	o, _ := e.newOffline(t)
	if err := o.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o.Stop)
	if _, err := e.pub.PublishShard(ctx, e.auth.Intermediate().ID, 0); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(o.Handler(e.pub.Handler()))
	t.Cleanup(srv.Close)
	root, inter := e.auth.Root(), e.auth.Intermediate()
	e.clk.Advance(time.Hour)

	cdp := inter.Cert.CRLDistributionPoints[0]
	if cdp != testBaseURL+"/crl/"+root.ID+".crl" {
		t.Fatalf("intermediate CDP %s", cdp)
	}
	rec, ok := o.Current(root.ID, 0)
	if !ok || rec.Number != 1 {
		t.Fatalf("served root CRL number %d (%v), want Init's 1", rec.Number, ok)
	}
	resp, err := http.Get(srv.URL + cdp[len(testBaseURL):])
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, rec.DER) {
		t.Fatalf("GET root CRL: %s, %d bytes", resp.Status, len(body))
	}
	for k, want := range map[string]string{
		"Content-Type":  "application/pkix-crl",
		"Cache-Control": "public, max-age=" + strconv.Itoa(int((ca.DefaultRootCRLValidity - time.Hour).Seconds())),
		"Last-Modified": rec.ThisUpdate.Format(http.TimeFormat),
		"Expires":       rec.NextUpdate.Format(http.TimeFormat),
		"ETag":          `"0-1"`,
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	crl, err := x509.ParseRevocationList(body)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(root.Cert); err != nil {
		t.Errorf("root CRL signature: %v", err)
	}
	lintCRL(t, body)

	for _, tc := range []struct {
		name   string
		method string
		path   string
		header [2]string
		want   int
	}{
		{"conditional", "GET", "/crl/" + root.ID + ".crl", [2]string{"If-None-Match", `"0-1"`}, http.StatusNotModified},
		{"head", "HEAD", "/crl/" + root.ID + ".crl", [2]string{}, http.StatusOK},
		{"post", "POST", "/crl/" + root.ID + ".crl", [2]string{}, http.StatusMethodNotAllowed},
		{"root shard", "GET", "/crl/" + root.ID + "/1.crl", [2]string{}, http.StatusNotFound},
		{"root no suffix", "GET", "/crl/" + root.ID, [2]string{}, http.StatusNotFound},
		{"intermediate", "GET", "/crl/" + inter.ID + ".crl", [2]string{}, http.StatusOK},
		{"unknown", "GET", "/crl/0123456789abcdef.crl", [2]string{}, http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			if tc.header[0] != "" {
				req.Header.Set(tc.header[0], tc.header[1])
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("%s %s: %s, want %d", tc.method, tc.path, resp.Status, tc.want)
			}
			if tc.name == "intermediate" {
				e.parseCRL(t, body) // signed by the intermediate: the publisher answered
			}
		})
	}
}

// TestOfflineCRLReload drives the reload loop with the fake clock: a root
// CRL signed by another process while serving is picked up at the next tick.
func TestOfflineCRLReload(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e := newTestEnv(t, 0)
	rootID := e.auth.Root().ID
	o, _ := e.newOffline(t)
	reloaded := make(chan struct{}, 1)
	o.afterReload = func() {
		select {
		case reloaded <- struct{}{}:
		default: // a failed test no longer listens; Stop must not hang
		}
	}
	if err := o.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o.Stop)
	<-reloaded // Start's own load

	signed := e.signRoot(t, 0)
	if cur, _ := o.Current(rootID, 0); cur.Number != 1 {
		t.Errorf("served number %d before the reload, want 1", cur.Number)
	}
	if err := e.clk.BlockUntilContext(ctx, 1); err != nil { // the ticker
		t.Fatal(err)
	}
	e.clk.Advance(time.Minute)
	select {
	case <-reloaded:
	case <-ctx.Done():
		t.Fatal("no reload after a tick")
	}
	if cur, _ := o.Current(rootID, 0); cur.Number != 2 || !bytes.Equal(cur.DER, signed.DER) {
		t.Errorf("served number %d after the reload, want 2", cur.Number)
	}
}

// TestOfflineCRLDue: a CRL near or past its nextUpdate is warned about
// (once, then daily) and flagged by the due metric until re-signed.
func TestOfflineCRLDue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newTestEnv(t, 0)
	rootID := e.auth.Root().ID
	o, logs := e.newOffline(t)
	due := o.metrics.due.WithLabelValues(rootID)
	reload := func() {
		t.Helper()
		if err := o.Reload(ctx); err != nil {
			t.Fatal(err)
		}
	}
	reload()
	if got, l := gaugeValue(t, due), logs.take(); got != 0 || l != "" {
		t.Errorf("Init's root CRL: due %v, log %q", got, l)
	}

	// Valid for 20 days: due at once (within 30 days of its nextUpdate).
	short := e.signRoot(t, 20*24*time.Hour)
	reload()
	if cur, _ := o.Current(rootID, 0); cur.Number != 2 {
		t.Errorf("served number %d, want 2", cur.Number)
	}
	if got, l := gaugeValue(t, due), logs.take(); got != 1 || !strings.Contains(l, "level=WARN") || !strings.Contains(l, "near its nextUpdate") {
		t.Errorf("20-day root CRL: due %v, log %q", got, l)
	}
	if got := gaugeValue(t, o.metrics.nextUpdate.WithLabelValues(rootID)); got != float64(short.NextUpdate.Unix()) {
		t.Errorf("next update metric %v, want %d", got, short.NextUpdate.Unix())
	}
	// Not repeated at every reload, but again a day later.
	e.clk.Advance(time.Minute)
	reload()
	if l := logs.take(); l != "" {
		t.Errorf("warned again a minute later: %q", l)
	}
	e.clk.Advance(warnEvery)
	reload()
	if l := logs.take(); !strings.Contains(l, "near its nextUpdate") {
		t.Errorf("not warned again a day later: %q", l)
	}

	// Past its nextUpdate.
	e.clk.Advance(20 * 24 * time.Hour)
	reload()
	if got, l := gaugeValue(t, due), logs.take(); got != 1 || !strings.Contains(l, "past its nextUpdate") {
		t.Errorf("expired root CRL: due %v, log %q", got, l)
	}

	// Re-signed for a year: fresh again, silently.
	fresh := e.signRoot(t, 0)
	reload()
	if cur, _ := o.Current(rootID, 0); cur.Number != fresh.Number || gaugeValue(t, due) != 0 {
		t.Errorf("after re-signing: number %d (want %d), due %v", cur.Number, fresh.Number, gaugeValue(t, due))
	}
	if l := logs.take(); strings.Contains(l, "WARN") || !strings.Contains(l, "stored CRL picked up") {
		t.Errorf("after re-signing, log %q", l)
	}
	if got := gaugeValue(t, o.metrics.number.WithLabelValues(rootID)); got != float64(fresh.Number) {
		t.Errorf("number metric %v, want %d", got, fresh.Number)
	}
}

func TestOfflineCRLMissing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newTestEnv(t, 0)
	const id = "0123456789abcdef"
	o, logs := e.newOffline(t, id)
	if err := o.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if got, l := gaugeValue(t, o.metrics.due.WithLabelValues(id)), logs.take(); got != 1 || !strings.Contains(l, "no CRL stored") {
		t.Errorf("missing CRL: due %v, log %q", got, l)
	}
	srv := httptest.NewServer(o.Handler(http.NotFoundHandler()))
	t.Cleanup(srv.Close)
	getURL(t, srv.URL+"/crl/"+id+".crl", http.StatusNotFound)
}

// failingCRLs fails every read.
type failingCRLs struct{}

var errStoreDown = errors.New("store down")

func (failingCRLs) CRLs(context.Context, string) ([]store.CRLRecord, error) { return nil, errStoreDown }

func TestOfflineCRLRefuses(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, 0)
	for _, cfg := range []OfflineConfig{
		{Logger: discard()},
		{Clock: e.clk},
		{Clock: e.clk, Logger: discard(), Reload: time.Millisecond},
		{Clock: e.clk, Logger: discard(), Warn: -time.Hour},
		{Clock: e.clk, Logger: discard(), Issuers: []string{"../x"}},
	} {
		if _, err := NewOfflineCRLs(cfg, e.st); err == nil {
			t.Errorf("NewOfflineCRLs(%+v) succeeded", cfg)
		}
	}
	o, err := NewOfflineCRLs(OfflineConfig{Issuers: []string{e.auth.Root().ID}, Clock: e.clk, Logger: discard()}, failingCRLs{})
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Start(context.Background()); !errors.Is(err, errStoreDown) {
		t.Errorf("Start on a failing store = %v, want %v", err, errStoreDown)
	}
	if got := counterValue(t, o.metrics.reloadFailures); got != 1 {
		t.Errorf("reload failures %v, want 1", got)
	}
}
