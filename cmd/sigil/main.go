// Command sigil is the Sigil certificate authority: it initializes and
// serves a CA, and its admin subcommands talk to a running server.
package main

import (
	"errors"
	"fmt"
	"os"

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
		keysCmd(),
		auditCmd(),
		benchCmd(),
	)
	if err := root.Execute(); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			fmt.Fprintln(os.Stderr, "sigil:", ee.err)
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "sigil:", err)
		os.Exit(1)
	}
}

// exitError carries a specific exit code.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
