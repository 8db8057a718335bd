package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// table is a list rendered as aligned columns, CSV, or (from its source
// value) JSON.
type table struct {
	header []string
	rows   [][]string
}

func addFormatFlag(cmd *cobra.Command, format *string) {
	cmd.Flags().StringVar(format, "format", "table", "output format: table, json or csv")
}

func checkFormat(format string) error {
	switch format {
	case "table", "json", "csv":
		return nil
	}
	return fmt.Errorf("--format %q: want table, json or csv", format)
}

// render writes t as format; json renders v instead.
func render(w io.Writer, format string, t table, v any) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "csv":
		cw := csv.NewWriter(w)
		if err := cw.Write(t.header); err != nil {
			return err
		}
		if err := cw.WriteAll(t.rows); err != nil {
			return err
		}
		cw.Flush()
		return cw.Error()
	default:
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(t.header, "\t"))
		for _, r := range t.rows {
			fmt.Fprintln(tw, strings.Join(r, "\t"))
		}
		return tw.Flush()
	}
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// renderPage renders one page of a list and, for humans, says how to get
// the next one.
func renderPage(cmd *cobra.Command, format string, t table, v any, next string) error {
	if err := render(cmd.OutOrStdout(), format, t, v); err != nil {
		return err
	}
	if next != "" && format == "table" {
		fmt.Fprintf(cmd.ErrOrStderr(), "more results: --cursor %s (or --all)\n", next)
	}
	return nil
}
