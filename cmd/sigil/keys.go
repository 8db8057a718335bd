package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/api"
)

func keysCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Key inventory and KEK re-wrapping"}
	cmd.AddCommand(keysListCmd(), keysRewrapCmd())
	return cmd
}

func keysListCmd() *cobra.Command {
	var cf clientFlags
	var format string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List every key the CA holds (never key material)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.connect(format)
			if err != nil {
				return err
			}
			var resp struct {
				Keys []ca.KeyInfo `json:"keys"`
			}
			if err := c.do(cmd.Context(), "GET", "/v1/keys", nil, &resp); err != nil {
				return err
			}
			t := table{header: []string{"ID", "PURPOSE", "ALGORITHM", "BACKEND", "STATE", "KEK", "CREATED", "ROTATED", "LAST USED"}}
			for _, k := range resp.Keys {
				t.rows = append(t.rows, []string{k.ID, k.Purpose, k.Algorithm, k.Backend, k.State, k.KEK, fmtTime(k.Created), fmtTime(k.Rotated), fmtTime(k.LastUsed)})
			}
			return render(cmd.OutOrStdout(), format, t, resp)
		},
	}
	cf.register(cmd)
	addFormatFlag(cmd, &format)
	return cmd
}

func keysRewrapCmd() *cobra.Command {
	var cf clientFlags
	var currentFile, newFile string
	cmd := &cobra.Command{
		Use:   "rewrap",
		Short: "Change the passphrase: re-wrap every data key under a new KEK while the server keeps issuing",
		Long: `Re-wraps every data key under a KEK derived from a new passphrase, in one
transaction on the running server. Private keys are never decrypted. The
current passphrase comes from --passphrase-file, SIGIL_PASSPHRASE or a prompt;
the new one from --new-passphrase-file, SIGIL_NEW_PASSPHRASE or a prompt.
A wrong current passphrase changes nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			cur, err := passphraseSource{file: currentFile, envVar: "SIGIL_PASSPHRASE", prompt: "Current passphrase"}.read(false)
			if err != nil {
				return err
			}
			next, err := passphraseSource{file: newFile, envVar: "SIGIL_NEW_PASSPHRASE", prompt: "New passphrase"}.read(true)
			if err != nil {
				return err
			}
			if err := checkNewPassphrase(next); err != nil {
				return err
			}
			var resp api.RewrapResponse
			err = c.do(cmd.Context(), "POST", "/v1/keys/rewrap", api.RewrapRequest{CurrentPassphrase: string(cur), NewPassphrase: string(next)}, &resp)
			clear(cur)
			clear(next)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "re-wrapped %d keys under %s; use the new passphrase from the next start on\n", resp.Keys, resp.KEK)
			return nil
		},
	}
	cf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&currentFile, "passphrase-file", "", "file holding the current passphrase")
	f.StringVar(&newFile, "new-passphrase-file", "", "file holding the new passphrase")
	return cmd
}
