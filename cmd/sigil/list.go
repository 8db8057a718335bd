package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/sigil-ca/sigil/api/client"
)

// column is one column of a listing: its heading and its cell for an item.
type column[E any] struct {
	head string
	cell func(E) string
}

// tableOf lays items out in cols.
func tableOf[E any](cols []column[E], items []E) table {
	t := table{header: make([]string, len(cols)), rows: make([][]string, 0, len(items))}
	for i, c := range cols {
		t.header[i] = c.head
	}
	for _, it := range items {
		row := make([]string, len(cols))
		for i, c := range cols {
			row[i] = c.cell(it)
		}
		t.rows = append(t.rows, row)
	}
	return t
}

// listSpec is what differs between the CLI's list commands: how to fetch
// the server's answer R and which items E of it to show in which columns.
type listSpec[R, E any] struct {
	fetch func(ctx context.Context, c *client.Client, args []string) (R, error)
	items func(R) []E
	cols  []column[E]
	// next, for a paged list, is the cursor of the next page; a table is
	// followed by a hint on stderr to fetch it.
	next func(R) string
}

// listCmd makes cmd (its Use, Short, Args and own flags) a list command:
// it connects with the client flags, fetches, and prints a table, CSV, or
// with --format json the answer R as it is.
func listCmd[R, E any](cmd *cobra.Command, spec listSpec[R, E]) *cobra.Command {
	var cf clientFlags
	var format string
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := cf.connect(format)
		if err != nil {
			return err
		}
		r, err := spec.fetch(cmd.Context(), c, args)
		if err != nil {
			return err
		}
		t := tableOf(spec.cols, spec.items(r))
		var next string
		if spec.next != nil {
			next = spec.next(r)
		}
		return renderPage(cmd, format, t, r, next)
	}
	cf.register(cmd)
	addFormatFlag(cmd, &format)
	return cmd
}
