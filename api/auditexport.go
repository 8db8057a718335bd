package api

import (
	"bufio"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/sigil-ca/sigil/api/wire"
	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/audit"
)

// AuditEventsHeader is the response header of GET /v1/audit/export that
// gives the number of events the export holds, before the body: clients
// show progress with it.
const AuditEventsHeader = "X-Sigil-Audit-Events"

// exportFlushEvery is how many events an export writes between flushes, so
// a client sees progress and neither end buffers the whole result.
const exportFlushEvery = 256

// exportAudit serves GET /v1/audit/export?since=RFC3339&format=ndjson|csv.
// NDJSON is the verifiable export of audit.ExportWriter: its header carries
// the audit signer's certificate, so `sigil audit verify --export` needs only
// the file and the root. CSV is a flat table for people and spreadsheets,
// with no verification promise. Errors before the first byte are API
// errors; a failure while streaming aborts the response, so the client sees
// a broken transfer (and an NDJSON export without its end line), never a
// complete-looking file.
func (api *API) exportAudit(w http.ResponseWriter, r *http.Request, _ ca.Principal) error {
	q := r.URL.Query()
	for k := range q {
		if k != "since" && k != "format" {
			return &ca.Error{Kind: ca.Malformed, Detail: "unknown query parameter " + strconv.Quote(k)}
		}
	}
	since, err := wire.ParseTime(q, "since")
	if err != nil {
		return err
	}
	format := q.Get("format")
	switch format {
	case "":
		format = "ndjson"
	case "ndjson", "csv":
	default:
		return &ca.Error{Kind: ca.Malformed, Detail: `format must be "ndjson" or "csv"`}
	}
	x, err := api.auditor.PrepareAuditExport(r.Context(), since)
	if err != nil {
		return err
	}
	name := "sigil-audit-" + x.Header.Exported.Format("20060102T150405Z") + "." + format
	h := w.Header()
	if format == "csv" {
		h.Set("Content-Type", "text/csv; charset=utf-8")
	} else {
		h.Set("Content-Type", "application/x-ndjson")
	}
	h.Set("Content-Disposition", `attachment; filename="`+name+`"`)
	h.Set(AuditEventsHeader, strconv.FormatInt(x.Header.Events, 10))
	w.WriteHeader(http.StatusOK)

	bw := bufio.NewWriterSize(w, 32<<10)
	rc := http.NewResponseController(w)
	flush := func() error {
		if err := bw.Flush(); err != nil {
			return err
		}
		if err := rc.Flush(); err != nil && err != http.ErrNotSupported {
			return err
		}
		return nil
	}
	progress := func(n int64) error {
		if n%exportFlushEvery == 0 {
			return flush()
		}
		return nil
	}
	if format == "csv" {
		err = writeAuditCSV(r, bw, x, progress)
	} else {
		err = x.WriteNDJSON(r.Context(), bw, progress)
	}
	if err == nil {
		err = flush()
	}
	if err != nil {
		// The status line is sent: end the transfer abnormally rather than
		// let a cut-short export look complete.
		api.log.ErrorContext(r.Context(), "audit export failed", "error", err.Error(), "format", format,
			"first_seq", x.Header.FirstSeq, "last_seq", x.Header.LastSeq)
		panic(http.ErrAbortHandler)
	}
	return nil
}

// writeAuditCSV writes the events of x as CSV: seq, time, actor, action,
// target, detail (a JSON object) and hash (hex).
func writeAuditCSV(r *http.Request, w *bufio.Writer, x *ca.AuditExport, progress func(int64) error) error {
	cw := csv.NewWriter(w)
	if err := cw.Write([]string{"seq", "time", "actor", "action", "target", "detail", "hash"}); err != nil {
		return err
	}
	var n int64
	err := x.Events(r.Context(), func(e audit.Event) error {
		detail := "{}"
		if len(e.Detail) > 0 {
			b, err := json.Marshal(e.Detail) // keys sorted
			if err != nil {
				return err
			}
			detail = string(b)
		}
		if err := cw.Write([]string{strconv.FormatInt(e.Seq, 10), e.Time.UTC().Format(time.RFC3339Nano),
			e.Actor, e.Action, e.Target, detail, hex.EncodeToString(e.Hash)}); err != nil {
			return err
		}
		n++
		if n%exportFlushEvery == 0 {
			cw.Flush()
			if err := cw.Error(); err != nil {
				return err
			}
		}
		return progress(n)
	})
	if err != nil {
		return err
	}
	cw.Flush()
	return cw.Error()
}
