// Command sigil is the Sigil certificate authority: it initializes and
// serves a CA, and its admin subcommands talk to a running server.
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

func main() {
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
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "sigil:", oneLine(err))
		os.Exit(1)
	}
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
