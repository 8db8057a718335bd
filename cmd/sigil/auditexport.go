package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/api/client"
	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/internal/atomicfile"
)

func auditExportCmd() *cobra.Command {
	var cf clientFlags
	var since, format, out string
	cmd := &cobra.Command{
		Use:   "export --out FILE [--since T] [--format ndjson|csv]",
		Short: "Export the audit log to a file that verifies offline",
		Long: `Streams the audit log from the server into FILE. The server first signs a
checkpoint of the log's head, so the export ends at a signed checkpoint.

The default format, ndjson, is self-contained: it carries the events with
their hashes, the signed checkpoints and the audit signer's certificate, so

  sigil audit verify --export FILE --ca-file root.pem

checks it with nothing but the file and the root. csv is a flat table
(seq, time, actor, action, target, detail, hash) for people and spreadsheets,
with no verification promise.

FILE is written through a temporary file in the same directory and renamed
into place once complete and synced: a failed export leaves no file behind.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("--out is required")
			}
			if format != "ndjson" && format != "csv" {
				return fmt.Errorf("--format %q: want ndjson or csv", format)
			}
			q := url.Values{"format": {format}}
			if since != "" {
				if _, err := time.Parse(time.RFC3339, since); err != nil {
					return fmt.Errorf("--since %q: want an RFC 3339 time such as 2026-01-02T15:04:05Z", since)
				}
				q.Set("since", since)
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			n, err := exportAudit(cmd.Context(), c, q, format, out, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "exported %d audit events to %s\n", n, out)
			return nil
		},
	}
	cf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&out, "out", "", "file to write")
	f.StringVar(&since, "since", "", "export from the first event at or after this RFC 3339 time (default: the whole log)")
	f.StringVar(&format, "format", "ndjson", "ndjson (verifiable) or csv")
	return cmd
}

// exportAudit downloads GET /v1/audit/export?q into path, showing progress
// on progress, and returns the number of events written.
func exportAudit(ctx context.Context, c *client.Client, q url.Values, format, path string, progress io.Writer) (int64, error) {
	resp, err := c.ExportAudit(ctx, q)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	total, err := strconv.ParseInt(resp.Header.Get(api.AuditEventsHeader), 10, 64)
	if err != nil || total < 0 {
		return 0, fmt.Errorf("GET /v1/audit/export: no valid %s header", api.AuditEventsHeader)
	}
	bar := exportBar(progress, total, "events", true)
	counter := &eventCounter{csv: format == "csv", onEvent: func() { _ = bar.Add(1) }}
	err = atomicfile.WriteFrom(path, 0o600, func(w io.Writer) error {
		_, err := io.Copy(io.MultiWriter(w, counter), resp.Body)
		_ = bar.Finish()
		fmt.Fprintln(progress)
		if err != nil {
			return fmt.Errorf("export cut short after %d events (nothing written to %s): %w", counter.events, path, err)
		}
		if counter.events != total {
			return fmt.Errorf("export cut short: %d of %d events (nothing written to %s)", counter.events, total, path)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return counter.events, nil
}

// exportEventPrefix starts every event line of an NDJSON export
// (audit.ExportWriter writes "type" first).
var exportEventPrefix = []byte(`{"type":"event"`)

// eventCounter counts the events in a stream as it passes: NDJSON event
// lines, or CSV lines after the header (a line break inside a quoted CSV
// field is counted too: CSV progress is approximate).
type eventCounter struct {
	csv     bool
	onEvent func()
	events  int64
	lines   int64
	start   []byte // the current line's first bytes
}

func (c *eventCounter) Write(p []byte) (int, error) {
	for _, b := range p {
		if len(c.start) < len(exportEventPrefix) {
			c.start = append(c.start, b)
		}
		if b != '\n' {
			continue
		}
		c.lines++
		if (c.csv && c.lines > 1) || (!c.csv && bytes.HasPrefix(c.start, exportEventPrefix)) {
			c.events++
			c.onEvent()
		}
		c.start = c.start[:0]
	}
	return len(p), nil
}

// verifyExportFile verifies an NDJSON export offline against the roots in
// caFile and prints a summary.
func verifyExportFile(cmd *cobra.Command, path, caFile string) error {
	if caFile == "" {
		return errors.New("--export needs --ca-file root.pem: the root is what the export is checked against")
	}
	pemData, err := os.ReadFile(caFile)
	if err != nil {
		return fmt.Errorf("--ca-file: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemData) {
		return fmt.Errorf("--ca-file %s holds no PEM certificate", caFile)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("--export: %w", err)
	}
	defer f.Close()
	sum, err := audit.VerifyExport(f, roots)
	if err != nil {
		return fmt.Errorf("audit export verification FAILED: %s: %w", path, err)
	}
	w := cmd.OutOrStdout()
	if sum.Events == 0 {
		fmt.Fprintf(w, "audit export OK: no events (exported %s from %q)\n", sum.Exported.Format(time.RFC3339), sum.CA)
		return nil
	}
	signer := sum.CoveredBy.Subject.CommonName
	fmt.Fprintf(w, "audit export OK: %d events, seq %d..%d, %d signed checkpoints, head %d %x\n",
		sum.Events, sum.FirstSeq, sum.LastSeq, sum.Checkpoints, sum.Head.Seq, sum.Head.Hash)
	fmt.Fprintf(w, "last checkpoint %s by %q (key %s), certified by the given root\n",
		sum.Covered.Time.Format(time.RFC3339), signer, sum.Covered.KeyID)
	if sum.FirstSeq > 1 {
		fmt.Fprintf(w, "note: the export starts at event %d (since %s); events before it are not included\n",
			sum.FirstSeq, sum.Since.Format(time.RFC3339))
	}
	return nil
}
