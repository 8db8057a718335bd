package api

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/internal/reqlog"
	"github.com/sigil-ca/sigil/store"
)

// ExportContentType is the Content-Type of a certificate export in format
// ("ndjson" or "csv"); ok is false for any other format.
func ExportContentType(format string) (ctype string, ok bool) {
	switch format {
	case "ndjson":
		return "application/x-ndjson", true
	case "csv":
		return "text/csv; charset=utf-8", true
	}
	return "", false
}

// CertCSVHeader is the header row of a CSV certificate export; every row
// has these columns in this order.
var CertCSVHeader = []string{"serial", "issuer", "subject", "sans", "not_before", "not_after", "key_algorithm",
	"profile", "requester", "channel", "issued", "status", "revoked_at", "revocation_reason"}

const (
	// exportBuffer is how much of an export is held before it is written:
	// it is also why an error before the first row writes nothing.
	exportBuffer = 64 << 10
	// exportFlushRows is how often (in rows) an export is pushed to the
	// client even when the buffer is not full, so that a slow, sparse
	// query still shows progress; it is the store's scan page size.
	exportFlushRows = 1000
	// exportQueue is how many records the scan may run ahead of the
	// encoding.
	exportQueue = 256
)

// WriteCertExport writes the certificates scan yields to w as format:
//
//   - "ndjson": one Certificate JSON object per line, as GET
//     /v1/certificates/{serial} shows it, PEM included, so that each line is
//     the full record.
//   - "csv": the CertCSVHeader row, then one row per certificate; SANs are
//     space-separated, times RFC 3339 in UTC, revoked_at and
//     revocation_reason empty unless revoked. A cell that a spreadsheet
//     would read as a formula (starting with = + - @, tab or carriage
//     return) is prefixed with a single quote (OWASP, CSV injection).
//
// Status is computed at now. Memory is constant: scan runs on its own
// goroutine at most exportQueue records ahead of the encoding, which writes
// through a fixed buffer; WriteCertExport returns only after scan has.
// Nothing reaches w before scan has yielded its
// first row or returned nil, so an error from a query that is refused
// (bad filter) leaves w untouched; w is flushed every exportFlushRows rows
// (and, if it has a Flush() error method, that is called too), and an error
// after that only cuts the output short. An unknown format is Malformed and
// scan is not called.
func WriteCertExport(w io.Writer, format string, scan func(fn func(store.CertRecord) error) error, now time.Time) error {
	if _, ok := ExportContentType(format); !ok {
		return &ca.Error{Kind: ca.Malformed, Detail: "format must be ndjson or csv"}
	}
	bw := bufio.NewWriterSize(w, exportBuffer)
	var row func(store.CertRecord) error
	switch format {
	case "ndjson":
		enc := json.NewEncoder(bw)
		var pemBuf []byte
		row = func(c store.CertRecord) error {
			out := toCertificate(c, now, false)
			pemBuf = appendPEM(pemBuf[:0], c.DER)
			out.PEM = string(pemBuf)
			return enc.Encode(out)
		}
	case "csv":
		cw := csv.NewWriter(bw)
		if err := cw.Write(CertCSVHeader); err != nil {
			return err
		}
		rec := make([]string, len(CertCSVHeader))
		row = func(c store.CertRecord) error {
			certCSVRow(rec, toCertificate(c, now, false))
			if err := cw.Write(rec); err != nil {
				return err
			}
			cw.Flush() // into bw: csv.Writer holds its own buffer otherwise
			return cw.Error()
		}
	}
	flusher, _ := w.(interface{ Flush() error })

	// The scan (the store's reads) and the encoding each take about half
	// the time: they run side by side, the scan a bounded queue ahead, so
	// memory stays constant.
	recs := make(chan store.CertRecord, exportQueue)
	stop := make(chan struct{})
	scanErr := make(chan error, 1)
	go func() {
		defer close(recs)
		scanErr <- scan(func(c store.CertRecord) error {
			select {
			case recs <- c:
				return nil
			case <-stop:
				return errExportStopped
			}
		})
	}()
	n := 0
	var err error
	for c := range recs {
		if err = row(c); err != nil {
			err = fmt.Errorf("export: %w", err)
			break
		}
		if n++; n%exportFlushRows != 0 {
			continue
		}
		if err = bw.Flush(); err == nil && flusher != nil {
			err = flusher.Flush()
		}
		if err != nil {
			err = fmt.Errorf("export: %w", err)
			break
		}
	}
	close(stop)
	for range recs { // let the scan see stop, and wait for it to end
	}
	if serr := <-scanErr; err == nil && serr != nil {
		err = serr
	}
	if err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

// errExportStopped ends the scan of an export whose writing failed.
var errExportStopped = errors.New("export stopped")

// appendPEM appends the PEM encoding of a certificate (RFC 7468: base64 in
// lines of 64) to b: what pem.EncodeToMemory makes, without its per-line
// writer, which is a third of an NDJSON export's encoding time.
func appendPEM(b, der []byte) []byte {
	b = append(b, "-----BEGIN CERTIFICATE-----\n"...)
	enc := base64.StdEncoding
	for len(der) > 0 {
		chunk := der[:min(48, len(der))] // 48 bytes make a 64-character line
		der = der[len(chunk):]
		b = enc.AppendEncode(b, chunk)
		b = append(b, '\n')
	}
	return append(b, "-----END CERTIFICATE-----\n"...)
}

// certCSVRow fills rec (len(CertCSVHeader) cells) from c.
func certCSVRow(rec []string, c Certificate) {
	rec[0], rec[1], rec[2] = c.Serial, c.Issuer, c.Subject
	rec[3] = strings.Join(c.SANs, " ")
	rec[4], rec[5] = csvTime(c.NotBefore), csvTime(c.NotAfter)
	rec[6], rec[7], rec[8], rec[9] = c.KeyAlgorithm, c.Profile, c.Requester, c.Channel
	rec[10], rec[11], rec[12], rec[13] = csvTime(c.Issued), c.Status, csvTime(c.RevokedAt), c.RevocationReason
	for i, v := range rec {
		rec[i] = csvCell(v)
	}
}

func csvTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// csvCell neutralises a cell a spreadsheet would evaluate: Excel, LibreOffice
// and Sheets treat a leading = + - @ (and tab or CR, which some strip
// first) as the start of a formula. Subjects, SANs and requesters are
// chosen by whoever asked for the certificate, and the auditor opening the
// export is someone else.
func csvCell(v string) string {
	if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
		return "'" + v
	}
	return v
}

// exportStall is how long an export may go without sending a row before it
// is cut: the server's write timeout is lifted for an export, which may take
// longer than a request should, but a client that stops reading must not
// hold the scan open forever.
const exportStall = 2 * time.Minute

// exportRefused are the query parameters of /v1/certificates that make no
// sense for an export, which streams every match.
var exportRefused = []string{"cursor", "limit"}

// exportCertificates serves GET /v1/certificates/export: every certificate
// the filters select (the filters of GET /v1/certificates), as NDJSON
// (default) or CSV, streamed in constant memory. Errors in the query are
// ordinary API errors; once the first row is sent, an error aborts the
// response (and is logged), so that no client mistakes it for complete. X-Total-Count is the number of
// matches counted just before the scan (certificates issued meanwhile may
// make the export differ by as many).
func (api *API) exportCertificates(w http.ResponseWriter, r *http.Request, p ca.Principal) error {
	format, f, err := api.principalFilter(r, p, "format", exportRefused...)
	if err != nil {
		return err
	}
	if !r.URL.Query().Has("format") {
		format = "ndjson"
	}
	ctype, ok := ExportContentType(format)
	if !ok {
		return &ca.Error{Kind: ca.Malformed, Detail: "format must be ndjson or csv"}
	}
	f.Limit = 0
	now := f.Now
	_, total, err := api.auditor.CertificateSummary(r.Context(), f, store.GroupStatus)
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Content-Disposition", `attachment; filename="certificates-`+now.UTC().Format("20060102T150405Z")+"."+format+`"`)
	h.Set("X-Total-Count", strconv.FormatInt(total, 10))
	if r.Method == http.MethodHead {
		return nil
	}
	ew := &exportWriter{w: w, rc: http.NewResponseController(w)}
	// The server's write timeout bounds a request; an export is bounded by
	// its client reading instead: exportStall without a row sent fails the
	// blocked write by moving the deadline into the past.
	_ = ew.rc.SetWriteDeadline(time.Time{})
	stall := api.clk.AfterFunc(exportStall, func() {
		ew.mu.Lock()
		defer ew.mu.Unlock()
		if !ew.done { // once done, the connection may be serving another request
			_ = ew.rc.SetWriteDeadline(time.Unix(1, 0))
		}
	})
	defer func() {
		stall.Stop()
		ew.mu.Lock()
		ew.done = true
		ew.mu.Unlock()
	}()
	err = WriteCertExport(ew, format, func(fn func(store.CertRecord) error) error {
		return api.auditor.ScanCertificates(r.Context(), f, func(c store.CertRecord) error {
			stall.Reset(exportStall)
			return fn(c)
		})
	}, now)
	if err != nil && ew.wrote {
		// Too late for an error body. Ending the response normally would
		// make a short export look complete: abort it instead, so that the
		// client sees the connection (or HTTP/2 stream) reset, not the end
		// of the body.
		level := slog.LevelError
		if r.Context().Err() != nil {
			level = slog.LevelWarn // the client went away
		}
		api.log.Log(r.Context(), level, "export cut short", "request_id", reqlog.ID(r.Context()),
			"method", r.Method, "path", r.URL.Path, "actor", p.Actor(), "error", err)
		panic(http.ErrAbortHandler)
	}
	if err != nil {
		return err
	}
	if !ew.wrote {
		w.WriteHeader(http.StatusOK) // an empty export is still a download
	}
	return nil
}

// exportWriter sends the status with the first byte, so that a scan
// refused before any row is still an ordinary API error, and pushes each
// flush to the client.
type exportWriter struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	wrote bool

	mu   sync.Mutex
	done bool // the handler has returned
}

func (e *exportWriter) Write(b []byte) (int, error) {
	e.wrote = true
	return e.w.Write(b)
}

// Flush sends what is buffered to the client.
func (e *exportWriter) Flush() error {
	if err := e.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

// CertExportSource is what an Exporter scans; ca.Authority implements it.
type CertExportSource interface {
	Now() time.Time
	ScanCertificates(ctx context.Context, f store.CertFilter, fn func(store.CertRecord) error) error
}

// Exporter writes certificate exports for a surface other than /v1 (the
// auditor web page: it implements ui.CertExporter) with the same bytes as
// GET /v1/certificates/export, so that a CSV downloaded from the page and
// one from `sigil cert export` read alike.
type Exporter struct{ src CertExportSource }

// NewExporter returns an Exporter over src.
func NewExporter(src CertExportSource) Exporter { return Exporter{src: src} }

// ExportCertificates writes every certificate f selects to w in format
// "csv" or "ndjson", status computed at f.Now (the source's time if zero).
// Like WriteCertExport it writes nothing before the scan's first row, so a
// refused filter is still an error the caller can show.
func (e Exporter) ExportCertificates(ctx context.Context, w io.Writer, f store.CertFilter, format string) error {
	if f.Now.IsZero() {
		f.Now = e.src.Now()
	}
	return WriteCertExport(w, format, func(fn func(store.CertRecord) error) error {
		return e.src.ScanCertificates(ctx, f, fn)
	}, f.Now)
}
