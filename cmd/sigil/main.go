// Command sigil is the Sigil certificate authority: it initializes and
// serves a CA, and its admin subcommands talk to a running server.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

func main() {
	if code, _ := execute(context.Background(), newRootCmd(), os.Stderr); code != 0 {
		os.Exit(code)
	}
}

// execute runs root and returns the exit code and the error behind it; a
// failure is the one "sigil: ..." line on stderr.
func execute(ctx context.Context, root *cobra.Command, stderr io.Writer) (int, error) {
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(stderr, "sigil:", oneLine(err))
		return 1, err
	}
	return 0, nil
}

// newRootCmd builds the whole command tree; main and the in-process tests
// share it.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "sigil",
		Short:         "Sigil: an internal certificate authority with key management built in",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		initCmd(),
		serveCmd(),
		devCmd(),
		certCmd(),
		tokenCmd(),
		acmeCmd(),
		keysCmd(),
		managedCmd(),
		jobsCmd(),
		caCmd(),
		auditCmd(),
		benchCmd(),
		agentCmd(),
	)
	return root
}

// oneLine folds a multi-line error (joined validation errors, YAML errors)
// into the one line on stderr the CLI contract promises.
func oneLine(err error) string {
	lines := strings.FieldsFunc(err.Error(), func(r rune) bool { return r == '\n' || r == '\r' })
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return strings.Join(lines, "; ")
}
