package ui

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sigil-ca/sigil/api/wire"
	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/internal/reqlog"
	"github.com/sigil-ca/sigil/store"
)

const (
	searchPageSize = 50
	auditPageSize  = 100
	// chartDays is the span of the issued-per-day chart.
	chartDays = 30
	// soonWindow is what "expiring soon" means on the dashboard.
	soonWindow = 30 * 24 * time.Hour
)

type dashboardView struct {
	Chart        chart
	Expiring     []certRow
	ExpiringMore bool
	Revocations  []revocationRow
	Jobs         []wire.JobStatus
	JobsShown    bool
	JobsError    string
	ExpiringLink string
}

type revocationRow struct {
	Time           time.Time
	Serial, Reason string
	Actor          string
}

func (u *UI) dashboard(w http.ResponseWriter, r *http.Request, s session) error {
	ctx := r.Context()
	now := u.clk.Now().UTC()
	v := dashboardView{ExpiringLink: "/ui/certificates?" + url.Values{"status": {"valid"},
		"expiring_before": {now.Add(soonWindow).Format("2006-01-02")}}.Encode()}
	var err error
	if v.Chart, err = u.issuedChart(ctx, now); err != nil {
		return err
	}
	// Expiring soon: the ten valid certificates ending first within soonWindow.
	exp, next, err := u.a.Certificates(ctx, store.CertFilter{Status: "valid", ExpiringBefore: now.Add(soonWindow), Now: now,
		Sort: store.SortExpiryAsc, Limit: 10})
	if err != nil {
		return err
	}
	for _, c := range exp {
		v.Expiring = append(v.Expiring, toRow(c, now))
	}
	v.ExpiringMore = !next.IsZero()
	// Recent revocations, in the order they happened: the audit log has
	// them; keep the last ten of the past 30 days.
	var cursor int64
	for range 10 {
		evs, next, err := u.a.AuditEvents(ctx, store.AuditFilter{Action: audit.ActionCertRevoked, After: now.Add(-soonWindow), Cursor: cursor, Limit: 1000})
		if err != nil {
			return err
		}
		for _, e := range evs {
			v.Revocations = append(v.Revocations, revocationRow{Time: e.Time, Serial: e.Target, Reason: e.Detail["reason"], Actor: e.Actor})
		}
		if len(v.Revocations) > 10 {
			v.Revocations = v.Revocations[len(v.Revocations)-10:]
		}
		if next == 0 {
			break
		}
		cursor = next
	}
	slices.Reverse(v.Revocations)
	if u.cfg.Jobs != nil {
		v.JobsShown = true
		if v.Jobs, err = u.cfg.Jobs.JobStatus(ctx); err != nil {
			// The rest of the dashboard is still worth showing.
			u.log.ErrorContext(ctx, "ui: job status", "error", err)
			v.JobsError = "job status unavailable"
		}
	}
	u.render(w, r, http.StatusOK, "dashboard", view{Title: "Dashboard", Session: &s, Nav: "dashboard", Data: v})
	return nil
}

// chart is the issued-per-day bar chart, drawn as inline SVG on the server.
type chart struct {
	Bars             []bar
	Max, Total       int
	Width, Height    int
	First, Mid, Last string
	MidX             int
}

type bar struct {
	X, Y, W, H int
	Day        string
	Count      int
}

// issuedChart counts certificates issued per UTC day over chartDays, from
// the store's per-day summary.
func (u *UI) issuedChart(ctx context.Context, now time.Time) (chart, error) {
	start := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC).AddDate(0, 0, -(chartDays - 1))
	counts := make([]int, chartDays)
	c := chart{Width: chartDays * 20, Height: 120}
	days, _, err := u.a.CertificateSummary(ctx, store.CertFilter{IssuedAfter: start, Now: now}, store.GroupDay)
	if err != nil {
		return chart{}, err
	}
	for _, d := range days {
		t, err := time.Parse("2006-01-02", d.Key)
		if err != nil {
			return chart{}, fmt.Errorf("summary day %q: %w", d.Key, err)
		}
		if i := int(t.Sub(start) / (24 * time.Hour)); i >= 0 && i < chartDays {
			counts[i] = int(d.Count)
		}
	}
	for _, n := range counts {
		c.Max = max(c.Max, n)
		c.Total += n
	}
	for i, n := range counts {
		h := 0
		if c.Max > 0 {
			h = n * (c.Height - 4) / c.Max
		}
		if n > 0 {
			h = max(h, 2) // a day with one certificate stays visible
		}
		c.Bars = append(c.Bars, bar{X: i*20 + 2, Y: c.Height - h, W: 16, H: h, Day: start.AddDate(0, 0, i).Format("2006-01-02"), Count: n})
	}
	c.First, c.Mid, c.Last = c.Bars[0].Day, c.Bars[chartDays/2].Day, c.Bars[chartDays-1].Day
	c.MidX = c.Bars[chartDays/2].X + 8
	return c, nil
}

type searchView struct {
	Fields  []formField
	Rows    []certRow
	Next    string
	Error   string
	Export  bool
	CSV     string
	NDJSON  string
	Applied bool
}

func (u *UI) certificates(w http.ResponseWriter, r *http.Request, s session) error {
	q := r.URL.Query()
	now := u.clk.Now().UTC()
	v := searchView{Fields: fill(certFields(), q), Export: u.cfg.Export != nil}
	status := http.StatusOK
	f, err := certFilter(q, searchPageSize, now)
	if err == nil {
		var recs []store.CertRecord
		var next store.CertCursor
		recs, next, err = u.a.Certificates(r.Context(), f)
		for _, c := range recs {
			v.Rows = append(v.Rows, toRow(c, now))
		}
		if !next.IsZero() {
			v.Next = pageLink(certFields(), q, wire.EncodeCursor(f.Sort, next))
		}
	}
	if err != nil {
		if ca.KindOf(err) == ca.Internal {
			return err
		}
		v.Error, status = errorDetail(err), http.StatusBadRequest
		reqlog.From(r.Context()).Refused("reason", ca.KindOf(err).String(), "detail", v.Error)
	}
	if v.Export {
		fq := filterQuery(certFields(), q)
		fq.Set("format", "csv")
		v.CSV = "/ui/export/certificates?" + fq.Encode()
		fq.Set("format", "ndjson")
		v.NDJSON = "/ui/export/certificates?" + fq.Encode()
	}
	u.render(w, r, status, "certificates", view{Title: "Certificates", Session: &s, Nav: "certificates", Data: v})
	return nil
}

func errorDetail(err error) string {
	if ce, ok := ca.AsError(err); ok {
		return ce.Detail
	}
	return err.Error()
}

type detailView struct {
	certRow
	Decoded      decoded
	DecodeError  string
	Chain        []chainCert
	Token        *store.TokenRecord
	Order        *orderRef
	Events       []eventRow
	EventsMore   bool
	LogShown     bool
	Log          LogInclusion
	LogError     string
	ReplacedFrom string
}

type orderRef struct {
	ID, Account, Endpoint string
	Time                  time.Time
}

type eventRow struct {
	Seq                   int64
	Time                  time.Time
	Actor, Action, Target string
	Detail                []string
	CertLink              bool
}

func toEventRow(e audit.Event) eventRow {
	return eventRow{Seq: e.Seq, Time: e.Time, Actor: e.Actor, Action: e.Action, Target: e.Target,
		Detail: detailPairs(e.Detail), CertLink: strings.HasPrefix(e.Action, "cert.") && e.Target != ""}
}

func (u *UI) loadCert(r *http.Request) (store.CertRecord, error) {
	serial, err := ca.NormalizeSerial(r.PathValue("serial"))
	if err != nil {
		return store.CertRecord{}, err
	}
	return u.a.Certificate(r.Context(), serial)
}

func (u *UI) certificate(w http.ResponseWriter, r *http.Request, s session) error {
	ctx := r.Context()
	rec, err := u.loadCert(r)
	if err != nil {
		return err
	}
	now := u.clk.Now().UTC()
	v := detailView{certRow: toRow(rec, now)}
	if v.Decoded, err = decode(rec.DER); err != nil {
		v.DecodeError = err.Error()
	}
	issuers, err := u.cfg.Issuers.Issuers(ctx)
	if err != nil {
		return fmt.Errorf("load issuers: %w", err)
	}
	for _, i := range chainOf(issuers, rec.IssuerID) {
		v.Chain = append(v.Chain, toChainCert(i))
	}
	if err := u.requestedBy(ctx, rec, &v); err != nil {
		return err
	}
	evs, next, err := u.a.AuditEvents(ctx, store.AuditFilter{Target: rec.Serial, Limit: 200})
	if err != nil {
		return err
	}
	for _, e := range evs {
		v.Events = append(v.Events, toEventRow(e))
	}
	v.EventsMore = next > 0
	if u.cfg.Log != nil {
		v.LogShown = true
		if v.Log, err = u.cfg.Log.InclusionStatus(ctx, rec.Serial); err != nil {
			u.log.ErrorContext(ctx, "ui: log inclusion", "serial", rec.Serial, "error", err)
			v.LogError = "inclusion proof unavailable: " + errorDetail(err)
		}
	}
	u.render(w, r, http.StatusOK, "certificate", view{Title: "Certificate " + rec.Serial, Session: &s, Nav: "certificates", Data: v})
	return nil
}

// requestedBy finds what asked for the certificate: the API token named
// by the requester, or the ACME order whose finalization recorded its
// serial (acme.order.finalized, appended just after issuance).
func (u *UI) requestedBy(ctx context.Context, rec store.CertRecord, v *detailView) error {
	if id, ok := strings.CutPrefix(rec.Requester, "token:"); ok {
		toks, err := u.access.Tokens(ctx)
		if err != nil {
			return err
		}
		for _, t := range toks {
			if t.ID == id {
				t.SecretHash = nil
				v.Token = &t
				break
			}
		}
	}
	if rec.Channel != ca.ChannelACME {
		return nil
	}
	f := store.AuditFilter{Action: audit.ActionACMEOrderFinalized, After: rec.Created.Add(-time.Minute), Before: rec.Created.Add(10 * time.Minute), Limit: 1000}
	for range 5 {
		evs, next, err := u.a.AuditEvents(ctx, f)
		if err != nil {
			return err
		}
		for _, e := range evs {
			if e.Detail["serial"] == rec.Serial {
				v.Order = &orderRef{ID: e.Target, Account: strings.TrimPrefix(e.Actor, "acme:"), Endpoint: e.Detail["endpoint"], Time: e.Time}
				return nil
			}
		}
		if next == 0 {
			return nil
		}
		f.Cursor = next
	}
	return nil
}

// certificatePEM downloads the certificate and its chain up to the root.
func (u *UI) certificatePEM(w http.ResponseWriter, r *http.Request, _ session) error {
	rec, err := u.loadCert(r)
	if err != nil {
		return err
	}
	issuers, err := u.cfg.Issuers.Issuers(r.Context())
	if err != nil {
		return fmt.Errorf("load issuers: %w", err)
	}
	var buf bytes.Buffer
	_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: rec.DER})
	for _, i := range chainOf(issuers, rec.IssuerID) {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: i.CertDER})
	}
	w.Header().Set("Content-Type", "application/pem-certificate-chain")
	w.Header().Set("Content-Disposition", `attachment; filename="`+rec.Serial+`.pem"`)
	_, _ = w.Write(buf.Bytes())
	return nil
}

// exportWriter sends the download headers with the first byte, so that an
// exporter that fails before writing still gets an error page.
type exportWriter struct {
	w       http.ResponseWriter
	headers func(http.Header)
	wrote   bool
}

func (e *exportWriter) Write(p []byte) (int, error) {
	if !e.wrote {
		e.wrote = true
		e.headers(e.w.Header())
		e.w.WriteHeader(http.StatusOK)
	}
	return e.w.Write(p)
}

func (u *UI) exportCertificates(w http.ResponseWriter, r *http.Request, _ session) error {
	q := r.URL.Query()
	format := q.Get("format")
	ctype := map[string]string{"csv": "text/csv; charset=utf-8", "ndjson": "application/x-ndjson"}[format]
	if ctype == "" {
		return &ca.Error{Kind: ca.Malformed, Detail: "format must be csv or ndjson"}
	}
	now := u.clk.Now().UTC()
	f, err := certFilter(q, 1, now)
	if err != nil {
		return err
	}
	f.Limit, f.After = 0, store.CertCursor{}
	ew := &exportWriter{w: w, headers: func(h http.Header) {
		h.Set("Content-Type", ctype)
		h.Set("Content-Disposition", `attachment; filename="certificates-`+now.Format("20060102T150405Z")+"."+format+`"`)
	}}
	if err := u.cfg.Export.ExportCertificates(r.Context(), ew, f, format); err != nil {
		if ew.wrote {
			// Too late for an error page: abort the response so the
			// browser sees a failed download, not a short file that
			// looks complete; the log says why.
			u.log.ErrorContext(r.Context(), "ui: export cut short", "error", err)
			panic(http.ErrAbortHandler)
		}
		return err
	}
	if !ew.wrote {
		ew.Write(nil) // an empty export is still a download
	}
	return nil
}

type auditView struct {
	Fields []formField
	Rows   []eventRow
	Next   string
	Error  string
	Since  string // the default window when the form was not submitted
}

func (u *UI) auditLog(w http.ResponseWriter, r *http.Request, s session) error {
	q := r.URL.Query()
	v := auditView{}
	// A first visit shows the last seven days; a submitted form (whose
	// fields are present even when empty) shows exactly what it asks for.
	if len(q) == 0 {
		q = url.Values{"after": {u.clk.Now().UTC().AddDate(0, 0, -7).Format("2006-01-02")}}
		v.Since = q.Get("after")
	}
	v.Fields = fill(auditFields(), q)
	status := http.StatusOK
	f, err := auditFilter(q, auditPageSize)
	if err == nil {
		var evs []audit.Event
		var next int64
		evs, next, err = u.a.AuditEvents(r.Context(), f)
		for _, e := range evs {
			v.Rows = append(v.Rows, toEventRow(e))
		}
		if next > 0 {
			v.Next = pageLink(auditFields(), q, strconv.FormatInt(next, 10))
		}
	}
	if err != nil {
		if ca.KindOf(err) == ca.Internal {
			return err
		}
		v.Error, status = errorDetail(err), http.StatusBadRequest
		reqlog.From(r.Context()).Refused("reason", ca.KindOf(err).String(), "detail", v.Error)
	}
	u.render(w, r, status, "audit", view{Title: "Audit log", Session: &s, Nav: "audit", Data: v})
	return nil
}

type verifyView struct {
	Result   verifyResult
	HeadHash string
	Age      time.Duration
	LogShown bool
	Log      LogVerification
	LogError string
}

func (u *UI) verify(w http.ResponseWriter, r *http.Request, s session) error {
	res := u.verifier.result(r.Context())
	v := verifyView{Result: res, Age: u.clk.Since(res.At).Round(time.Second)}
	if res.Err == nil {
		v.HeadHash = hex.EncodeToString(res.Report.Head.Hash)
	}
	if u.cfg.Log != nil {
		v.LogShown = true
		var err error
		if v.Log, err = u.cfg.Log.VerifyLog(r.Context()); err != nil {
			v.LogError = errorDetail(err)
		}
	}
	u.render(w, r, http.StatusOK, "verify", view{Title: "Verify", Session: &s, Nav: "verify", Data: v})
	return nil
}
