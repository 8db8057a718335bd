package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/sigil-ca/sigil/api/client"
	"github.com/sigil-ca/sigil/internal/atomicfile"
)

func certExportCmd() *cobra.Command {
	var cf clientFlags
	var filters certFilterFlags
	var format, out string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "export --out FILE",
		Short: "Export every certificate the filters select, as NDJSON or CSV",
		Long: `Export streams every certificate the filters select (the filters of
'cert list') from GET /v1/certificates/export into FILE: NDJSON, one JSON
record per line with its PEM, or CSV with fixed columns. A progress bar
shows on stderr. FILE is written under a temporary name in its directory
and renamed into place once complete and synced: an export that fails
leaves no file (and an existing FILE untouched).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "ndjson" && format != "csv" {
				return fmt.Errorf("--format %q: want ndjson or csv", format)
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			q := filters.query()
			q.Set("format", format)
			n, err := exportToFile(cmd.Context(), c, q, out, format == "csv",
				cmd.ErrOrStderr(), quiet)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "exported %d certificate(s) to %s\n", n, out)
			return nil
		},
	}
	cf.register(cmd)
	filters.register(cmd)
	f := cmd.Flags()
	f.StringVar(&format, "format", "ndjson", "ndjson (full records, PEM included) or csv")
	f.StringVar(&out, "out", "", "file to write (required)")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress bar")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

// exportToFile GETs the export of q, streamed, into out by way of a
// temporary file in out's directory that is synced and renamed only once
// the whole response has arrived. It returns the rows written (lines,
// less CSV's header). The server aborts a response it cannot finish, so a
// short export is an error here, never a short file.
func exportToFile(ctx context.Context, c *client.Client, q url.Values, out string, header bool, progress io.Writer, quiet bool) (int64, error) {
	resp, err := c.ExportCertificates(ctx, q)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	total := int64(-1) // unknown: the bar spins
	if v, err := strconv.ParseInt(resp.Header.Get("X-Total-Count"), 10, 64); err == nil && v >= 0 {
		total = v
	}

	bar := exportBar(progress, total, "certs", !quiet)
	lc := &lineCounter{bar: bar}
	if header {
		lc.skip = 1
	}
	err = atomicfile.WriteFrom(out, 0o600, func(w io.Writer) error {
		if _, err := io.Copy(io.MultiWriter(w, lc), resp.Body); err != nil {
			return fmt.Errorf("export cut short after %d certificate(s): %w", lc.rows, err)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	_ = bar.Finish()
	if !quiet {
		fmt.Fprintln(progress)
	}
	return lc.rows, nil
}

// lineCounter advances the progress bar by the lines written through it:
// one per NDJSON record or CSV row (a CSV cell holding a newline would
// count twice, which only nudges the bar).
type lineCounter struct {
	bar  *progressbar.ProgressBar
	skip int64 // header lines not counted
	rows int64
}

func (l *lineCounter) Write(p []byte) (int, error) {
	n := int64(bytes.Count(p, []byte{'\n'}))
	if s := min(n, l.skip); s > 0 {
		n, l.skip = n-s, l.skip-s
	}
	if n > 0 {
		l.rows += n
		_ = l.bar.Add64(n)
	}
	return len(p), nil
}

// exportBar is the progress bar of a download of total items (-1: unknown,
// the bar spins) on w.
func exportBar(w io.Writer, total int64, items string, visible bool) *progressbar.ProgressBar {
	return progressbar.NewOptions64(total, progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription("exporting"), progressbar.OptionShowCount(), progressbar.OptionShowIts(),
		progressbar.OptionSetItsString(items), progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetVisibility(visible))
}
