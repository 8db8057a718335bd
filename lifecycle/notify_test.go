package lifecycle

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sigil-ca/sigil/store"
)

const day = 24 * time.Hour

var testSecret = WebhookSecret("whsec-0123456789abcdef-test")

// receiver is a webhook endpoint on a real loopback listener that checks
// every signature and records what it accepted.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	clk    clockwork.Clock
	mu     sync.Mutex
	posts  int
	status []int // answers of the next POSTs; then 200
	got    []Notice
	ids    []string // Sigil-Delivery of every POST
}

func newReceiver(t *testing.T, clk clockwork.Clock) *receiver {
	rc := &receiver{t: t, clk: clk}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := VerifyWebhook(testSecret, r.Header.Get(SignatureHeader), body, rc.clk.Now(), 0); err != nil {
		rc.t.Errorf("receiver: %v", err)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.posts++
	rc.ids = append(rc.ids, r.Header.Get(DeliveryHeader))
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || r.Header.Get(EventHeader) != "expiry" {
		rc.t.Errorf("receiver: %s with Content-Type %q", r.Method, r.Header.Get("Content-Type"))
	}
	if len(rc.status) > 0 {
		code := rc.status[0]
		rc.status = rc.status[1:]
		if code != http.StatusOK {
			http.Error(w, "not now", code)
			return
		}
	}
	var ns []Notice
	if err := json.Unmarshal(body, &ns); err != nil {
		rc.t.Errorf("receiver: body %q: %v", body, err)
	}
	rc.got = append(rc.got, ns...)
}

func (rc *receiver) notices() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []string
	for _, n := range rc.got {
		out = append(out, n.Event+" "+n.Serial+"@"+n.Threshold)
	}
	return out
}

func (rc *receiver) postCount() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.posts
}

// certs records certificates in st; each gets an issuer "int".
type certSpec struct {
	serial    string
	notBefore time.Time
	notAfter  time.Time
	channel   string
	profile   string
	replaces  string
	revoked   bool
	sans      []string
}

func seedCerts(t *testing.T, st *store.SQLite, specs ...certSpec) {
	t.Helper()
	err := st.WithTx(context.Background(), func(tx store.Tx) error {
		if _, err := st.Key(context.Background(), "key-int"); err != nil {
			if err := tx.InsertKey(store.KeyRecord{ID: "key-int", Purpose: "intermediate", Algorithm: "ECDSA-P256", Backend: "passphrase",
				State: store.KeyActive, PublicKey: []byte("pub"), Created: testStart}); err != nil {
				return err
			}
			if err := tx.InsertIssuer(store.IssuerRecord{ID: "int", Kind: "intermediate", KeyID: "key-int", CertDER: []byte("der"),
				State: store.KeyActive, Created: testStart}); err != nil {
				return err
			}
		}
		for _, s := range specs {
			c := store.CertRecord{IssuerID: "int", Serial: s.serial, Subject: "CN=" + s.serial, SANs: s.sans, NotBefore: s.notBefore,
				NotAfter: s.notAfter, KeyAlgorithm: "ECDSA-P256", Profile: s.profile, Requester: "team:" + s.serial, Channel: s.channel,
				DER: []byte("der-" + s.serial), Created: s.notBefore, Replaces: s.replaces}
			if c.Channel == "" {
				c.Channel = "api"
			}
			if c.Profile == "" {
				c.Profile = "tls-server"
			}
			if err := tx.InsertCertificate(&c); err != nil {
				return err
			}
			if s.revoked {
				if err := tx.RevokeCertificate("int", s.serial, s.notBefore, 1, time.Time{}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func newNotifier(t *testing.T, clk clockwork.Clock, st *store.SQLite, url string, log *slog.Logger) *Notifier {
	t.Helper()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n, err := NewNotifier(NotifyConfig{WebhookURL: url, Secret: testSecret, Clock: clk, Logger: log,
		InitialBackoff: time.Second, MaxBackoff: 4 * time.Second, Attempts: 3}, st, st)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func run(t *testing.T, n *Notifier) Result {
	t.Helper()
	res, err := n.Run(context.Background())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

// TestNotifyThresholds: as the fake clock crosses thresholds, each notice
// is sent once, for the smallest threshold crossed; revoked, replaced and
// superseded certificates get none; the gauges count what expires within
// each threshold.
func TestNotifyThresholds(t *testing.T) {
	clk := clockwork.NewFakeClockAt(testStart)
	st, _ := openStore(t, clk)
	rc := newReceiver(t, clk)
	t0 := testStart
	seedCerts(t, st,
		certSpec{serial: "long", notBefore: t0.Add(-50 * day), notAfter: t0.Add(40 * day), sans: []string{"long.example.com"}},
		certSpec{serial: "mid", notBefore: t0.Add(-70 * day), notAfter: t0.Add(20 * day)},
		certSpec{serial: "short", notBefore: t0, notAfter: t0.Add(5 * day)}, // born inside 30d and 7d: only the 7-day notice
		certSpec{serial: "revoked", notBefore: t0.Add(-80 * day), notAfter: t0.Add(10 * day), revoked: true},
		certSpec{serial: "old", notBefore: t0.Add(-80 * day), notAfter: t0.Add(10 * day)},
		certSpec{serial: "renewal", notBefore: t0, notAfter: t0.Add(90 * day), replaces: "old"},
		certSpec{serial: "int2", notBefore: t0.Add(-5 * 365 * day), notAfter: t0.Add(25 * day), channel: "init", profile: "intermediate"},
		// The HTTPS certificate the server renews itself: an old issue and
		// the current one, a week long.
		certSpec{serial: "serving1", notBefore: t0.Add(-6 * day), notAfter: t0.Add(day), channel: "internal", profile: "sigil-serving"},
		certSpec{serial: "serving2", notBefore: t0.Add(-time.Hour), notAfter: t0.Add(7*day - time.Hour), channel: "internal", profile: "sigil-serving"},
	)
	n := newNotifier(t, clk, st, rc.srv.URL+"/hooks/expiry", nil)

	if res := run(t, n); res.Items != 3 {
		t.Errorf("first run delivered %d, want 3", res.Items)
	}
	want := []string{"certificate.expiring mid@30d", "certificate.expiring short@7d", "key.expiring int2@30d"}
	if got := rc.notices(); !sameSet(got, want) {
		t.Errorf("first run: %v, want %v", got, want)
	}
	for label, w := range map[string]float64{"30d": 2, "7d": 1, "1d": 0} {
		if got := gaugeValue(t, n.certGauge.WithLabelValues(label)); got != w {
			t.Errorf("sigil_certificates_expiring{within=%q} = %v, want %v", label, got, w)
		}
	}
	for label, w := range map[string]float64{"30d": 2, "7d": 1, "1d": 0} { // int2 and serving2; serving1 is superseded
		if got := gaugeValue(t, n.keyGauge.WithLabelValues(label)); got != w {
			t.Errorf("sigil_keys_expiring{within=%q} = %v, want %v", label, got, w)
		}
	}
	// The same instant again: nothing new.
	if res := run(t, n); res.Items != 0 || rc.postCount() != 1 {
		t.Errorf("second run delivered %d (%d POSTs), want nothing", res.Items, rc.postCount())
	}
	// Six days on: serving2 was not renewed and is inside a day (a
	// threshold under half its life); short is inside a day.
	clk.Advance(6*day + 2*time.Hour)
	run(t, n)
	// Thirteen days on: long crosses 30 days, mid 7 days.
	clk.Advance(7 * day)
	run(t, n)
	// Nineteen days on: mid crosses 1 day, int2 7 days.
	clk.Advance(6*day + time.Hour)
	run(t, n)
	run(t, n)
	want = append(want, "key.expiring serving2@1d", "certificate.expiring long@30d", "certificate.expiring mid@7d",
		"key.expiring int2@7d", "certificate.expiring mid@1d")
	got := rc.notices()
	if !sameSet(got, want) {
		t.Errorf("notices %v\nwant %v", got, want)
	}
	if len(got) != len(want) {
		t.Errorf("%d notices, want %d: some were sent twice", len(got), len(want))
	}
	for _, no := range rc.got {
		if no.Serial == "long" && (no.DaysLeft != 26 || no.Subject != "CN=long" || !slices.Equal(no.SANs, []string{"long.example.com"}) ||
			no.Requester != "team:long" || no.Profile != "tls-server" || !no.NotAfter.Equal(t0.Add(40*day)) || len(no.ID) != 32) {
			t.Errorf("notice %+v", no)
		}
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

// waitTimer waits until the notifier waits for its backoff on the fake clock.
func waitTimer(t *testing.T, clk *clockwork.FakeClock) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := clk.BlockUntilContext(ctx, 1); err != nil {
		t.Fatalf("the notifier is not waiting to retry: %v", err)
	}
}

// TestNotifyRetries: a receiver answering 500 then 200 gets the notice
// again after a backoff, and it is recorded once; a receiver down for every
// attempt fails the run, and the next run delivers; a 4xx is not retried
// within the run.
func TestNotifyRetries(t *testing.T) {
	clk := clockwork.NewFakeClockAt(testStart)
	st, _ := openStore(t, clk)
	rc := newReceiver(t, clk)
	seedCerts(t, st, certSpec{serial: "a", notBefore: testStart.Add(-80 * day), notAfter: testStart.Add(3 * day)})
	n := newNotifier(t, clk, st, rc.srv.URL, nil)

	rc.status = []int{http.StatusInternalServerError}
	done := make(chan Result, 1)
	go func() {
		res, err := n.Run(context.Background())
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		done <- res
	}()
	waitTimer(t, clk)
	clk.Advance(4 * time.Second) // the longest first backoff: 1s plus half
	if res := <-done; res.Items != 1 {
		t.Errorf("delivered %d, want 1", res.Items)
	}
	if rc.postCount() != 2 || rc.ids[0] != rc.ids[1] || len(rc.got) != 1 {
		t.Errorf("%d POSTs (deliveries %v), %d notices accepted; want one retry of the same delivery", rc.postCount(), rc.ids, len(rc.got))
	}
	if res := run(t, n); res.Items != 0 || rc.postCount() != 2 {
		t.Errorf("after delivery: %d more, %d POSTs", res.Items, rc.postCount())
	}

	// Down for all three attempts: the run fails; the next one delivers.
	seedCerts(t, st, certSpec{serial: "b", notBefore: testStart.Add(-80 * day), notAfter: testStart.Add(4 * day)})
	rc.status = []int{http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusTooManyRequests}
	errc := make(chan error, 1)
	go func() {
		_, err := n.Run(context.Background())
		errc <- err
	}()
	for range 2 {
		waitTimer(t, clk)
		clk.Advance(30 * time.Second)
	}
	if err := <-errc; err == nil || !strings.Contains(err.Error(), "after 3 attempts") {
		t.Errorf("Run with the receiver down = %v", err)
	}
	if res := run(t, n); res.Items != 1 {
		t.Errorf("next run delivered %d, want 1", res.Items)
	}
	// A 4xx is the receiver refusing: no retry in this run.
	seedCerts(t, st, certSpec{serial: "c", notBefore: testStart.Add(-80 * day), notAfter: testStart.Add(5 * day)})
	rc.status = []int{http.StatusBadRequest}
	before := rc.postCount()
	if _, err := n.Run(context.Background()); err == nil || rc.postCount() != before+1 {
		t.Errorf("Run with a 400: %v after %d POSTs, want an error after one", err, rc.postCount()-before)
	}
	run(t, n)
	if got := rc.notices(); !sameSet(got, []string{"certificate.expiring a@7d", "certificate.expiring b@7d", "certificate.expiring c@7d"}) || len(got) != 3 {
		t.Errorf("notices %v", got)
	}
}

// TestNotifyRestart: a scheduler on the same store after a restart does
// not send again what was delivered.
func TestNotifyRestart(t *testing.T) {
	clk := clockwork.NewFakeClockAt(testStart)
	st, path := openStore(t, clk)
	rc := newReceiver(t, clk)
	seedCerts(t, st, certSpec{serial: "a", notBefore: testStart.Add(-80 * day), notAfter: testStart.Add(20 * day)},
		certSpec{serial: "b", notBefore: testStart.Add(-80 * day), notAfter: testStart.Add(2 * day)})
	start := func(st *store.SQLite) *Scheduler {
		n := newNotifier(t, clk, st, rc.srv.URL, nil)
		s := newScheduler(t, clk, st, Job{Name: "expiry-notify", Schedule: MustSchedule("every 1h"), Task: n.Run})
		if err := s.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := start(st) // never ran: runs at start
	if r := latest(t, st, "expiry-notify"); r.Result != store.JobOK || r.Items != 2 {
		t.Fatalf("first run %+v", r)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	st.Close()
	st2, err := store.Open(context.Background(), store.Config{Path: path, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	s2 := start(st2)
	defer s2.Stop()
	if err := s2.Trigger("expiry-notify", "token:admin"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		runs, err := st2.JobRuns(context.Background(), "expiry-notify", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) == 2 && runs[0].Result != store.JobRunning {
			if runs[0].Result != store.JobOK || runs[0].Items != 0 {
				t.Errorf("run after the restart %+v, want ok with nothing sent", runs[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("runs %+v", runs)
		}
		time.Sleep(time.Millisecond) // another goroutine's commit, not the clock
	}
	if rc.postCount() != 1 || len(rc.got) != 2 {
		t.Errorf("%d POSTs, %d notices; want the first run's only", rc.postCount(), len(rc.got))
	}
}

// TestNotifyRedirects: a redirect to another host is refused (that host
// gets nothing); a 307 on the same origin is followed with the body.
func TestNotifyRedirects(t *testing.T) {
	clk := clockwork.NewFakeClockAt(testStart)
	st, _ := openStore(t, clk)
	other := newReceiver(t, clk)
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/same" {
			http.Redirect(w, r, "/final", http.StatusTemporaryRedirect)
			return
		}
		http.Redirect(w, r, other.srv.URL+"/stolen", http.StatusTemporaryRedirect)
	}))
	defer redirect.Close()
	seedCerts(t, st, certSpec{serial: "a", notBefore: testStart.Add(-80 * day), notAfter: testStart.Add(3 * day)})
	n := newNotifier(t, clk, st, redirect.URL+"/away", nil)
	if _, err := n.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "307") {
		t.Errorf("Run through a cross-host redirect = %v", err)
	}
	if other.postCount() != 0 {
		t.Error("the notice followed a redirect to another host")
	}
	same := newReceiver(t, clk)
	mux := http.NewServeMux()
	mux.HandleFunc("/same", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/final", http.StatusPermanentRedirect)
	})
	mux.HandleFunc("/final", same.serve)
	sameOrigin := httptest.NewServer(mux)
	defer sameOrigin.Close()
	n = newNotifier(t, clk, st, sameOrigin.URL+"/same", nil)
	if res := run(t, n); res.Items != 1 || len(same.got) != 1 {
		t.Errorf("same-origin 308: delivered %d, received %d", res.Items, len(same.got))
	}
}

// TestNotifyNoSecretsInLogs: neither the signing secret nor the URL's
// token reaches the logs or the errors.
func TestNotifyNoSecretsInLogs(t *testing.T) {
	clk := clockwork.NewFakeClockAt(testStart)
	st, _ := openStore(t, clk)
	rc := newReceiver(t, clk)
	seedCerts(t, st, certSpec{serial: "a", notBefore: testStart.Add(-80 * day), notAfter: testStart.Add(3 * day)})
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	n := newNotifier(t, clk, st, rc.srv.URL+"/hook?token=tok-3f9a1c", log)
	n.cfg.Attempts = 1
	rc.status = []int{http.StatusInternalServerError}
	_, err := n.Run(context.Background())
	if err == nil {
		t.Fatal("no error")
	}
	// An unreachable receiver: the client's error would name the URL.
	n.cfg.WebhookURL = "http://127.0.0.1:1/hook?token=tok-3f9a1c"
	_, err2 := n.Run(context.Background())
	log.Info("secret", "secret", n.cfg.Secret)
	all := logs.String() + err.Error() + err2.Error() + fmt.Sprintf("%v %+v %#v %x", n.cfg.Secret, n.cfg.Secret, n.cfg.Secret, n.cfg.Secret)
	for _, secret := range []string{string(testSecret), "tok-3f9a1c"} {
		if strings.Contains(all, secret) {
			t.Errorf("%q leaked: %s", secret, all)
		}
	}
}

// TestNotifyWithoutWebhook: without a URL the gauges are kept and nothing
// is recorded, so a webhook configured later still gets the notices.
func TestNotifyWithoutWebhook(t *testing.T) {
	clk := clockwork.NewFakeClockAt(testStart)
	st, _ := openStore(t, clk)
	seedCerts(t, st, certSpec{serial: "a", notBefore: testStart.Add(-80 * day), notAfter: testStart.Add(3 * day)})
	n := newNotifier(t, clk, st, "", nil)
	if res := run(t, n); res.Items != 0 || gaugeValue(t, n.certGauge.WithLabelValues("7d")) != 1 {
		t.Errorf("without webhook: %d items, gauge %v", res.Items, gaugeValue(t, n.certGauge.WithLabelValues("7d")))
	}
	rc := newReceiver(t, clk)
	if res := run(t, newNotifier(t, clk, st, rc.srv.URL, nil)); res.Items != 1 {
		t.Errorf("with the webhook added: %d", res.Items)
	}
}

func TestNotifyConfig(t *testing.T) {
	clk := clockwork.NewFakeClockAt(testStart)
	st, _ := openStore(t, clk)
	log := slog.New(slog.DiscardHandler)
	for name, cfg := range map[string]NotifyConfig{
		"relative URL":       {WebhookURL: "/hook", Secret: testSecret},
		"ftp URL":            {WebhookURL: "ftp://x/hook", Secret: testSecret},
		"no secret":          {WebhookURL: "https://x/hook"},
		"short secret":       {WebhookURL: "https://x/hook", Secret: WebhookSecret("short")},
		"zero threshold":     {Thresholds: []time.Duration{day, 0}},
		"repeated threshold": {Thresholds: []time.Duration{day, day}},
	} {
		cfg.Clock, cfg.Logger = clk, log
		if _, err := NewNotifier(cfg, st, st); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestVerifyWebhook(t *testing.T) {
	now := testStart
	body := []byte(`[{"event":"certificate.expiring"}]`)
	h := SignWebhook(testSecret, now, body)
	if !strings.HasPrefix(h, fmt.Sprintf("t=%d,v1=", now.Unix())) {
		t.Errorf("header %q", h)
	}
	if err := VerifyWebhook(testSecret, h, body, now.Add(time.Minute), 0); err != nil {
		t.Errorf("valid signature: %v", err)
	}
	for name, c := range map[string]struct {
		secret WebhookSecret
		header string
		body   []byte
		at     time.Time
	}{
		"other body":   {testSecret, h, []byte(`[]`), now},
		"other secret": {WebhookSecret("another-secret-of-some-length"), h, body, now},
		"replayed":     {testSecret, h, body, now.Add(6 * time.Minute)},
		"future":       {testSecret, h, body, now.Add(-6 * time.Minute)},
		"no v1":        {testSecret, fmt.Sprintf("t=%d", now.Unix()), body, now},
		"garbage":      {testSecret, "v1=zz,t=x", body, now},
		"moved t":      {testSecret, strings.Replace(h, fmt.Sprint(now.Unix()), fmt.Sprint(now.Unix()+1), 1), body, now},
	} {
		if err := VerifyWebhook(c.secret, c.header, c.body, c.at, 0); err == nil {
			t.Errorf("%s: verified", name)
		}
	}
}

func TestFormatThreshold(t *testing.T) {
	for d, want := range map[time.Duration]string{30 * day: "30d", 36 * time.Hour: "36h", 90 * time.Minute: "90m", 90 * time.Second: "1m30s"} {
		if got := FormatThreshold(d); got != want {
			t.Errorf("FormatThreshold(%v) = %q, want %q", d, got, want)
		}
	}
}

func gaugeValue(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}
