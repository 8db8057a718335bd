package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/api/client"
	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/keybackend"
)

func keysCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Key inventory, KEK re-wrapping and blocked keys"}
	cmd.AddCommand(keysListCmd(), keysShowCmd(), keysRewrapCmd(), keysBlockCmd())
	return cmd
}

func keysListCmd() *cobra.Command {
	return listCmd(&cobra.Command{
		Use:   "list",
		Short: "List every key the CA holds (never key material)",
		Args:  cobra.NoArgs,
	}, listSpec[api.KeyList, ca.KeyInfo]{
		fetch: func(ctx context.Context, c *client.Client, _ []string) (api.KeyList, error) { return c.Keys(ctx) },
		items: func(l api.KeyList) []ca.KeyInfo { return l.Keys },
		cols: []column[ca.KeyInfo]{
			{"ID", func(k ca.KeyInfo) string { return k.ID }},
			{"PURPOSE", func(k ca.KeyInfo) string { return k.Purpose }},
			{"ALGORITHM", func(k ca.KeyInfo) string { return k.Algorithm }},
			{"BACKEND", func(k ca.KeyInfo) string { return k.Backend }},
			{"STATE", func(k ca.KeyInfo) string { return k.State }},
			{"KEK", func(k ca.KeyInfo) string { return k.KEK }},
			{"CREATED", func(k ca.KeyInfo) string { return fmtTime(k.Created) }},
			{"ROTATED", func(k ca.KeyInfo) string { return fmtTime(k.Rotated) }},
			{"LAST USED", func(k ca.KeyInfo) string { return fmtTime(k.LastUsed) }},
		},
	})
}

func keysRewrapCmd() *cobra.Command {
	var cf clientFlags
	var currentFile, newFile, to string
	cmd := &cobra.Command{
		Use:   "rewrap",
		Short: "Change the passphrase, or move the KEK to AWS KMS (--to): re-wrap every data key while the server keeps issuing",
		Long: `Re-wraps every data key under a KEK derived from a new passphrase, in one
transaction on the running server. Private keys are never decrypted. The
current passphrase comes from --passphrase-file, SIGIL_PASSPHRASE or a prompt;
the new one from --new-passphrase-file, SIGIL_NEW_PASSPHRASE or a prompt.
A wrong current passphrase changes nothing.

With --to awskms:URI the data keys move to a KEK in AWS KMS (a new
symmetric key when the URI names none), online, a batch per transaction,
the server logging progress; from then on sigil serve needs no passphrase.
The server opens the KMS key with its own AWS credentials. The current
passphrase is asked only while the KEK is derived from one
(--passphrase-file or SIGIL_PASSPHRASE). --to passphrase moves them back
under a KEK derived from a new passphrase; --to awskms:OTHER moves them
to another KMS key.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			if to != "" {
				return rewrapTo(cmd, c, to, currentFile, newFile)
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
			resp, err := c.Rewrap(cmd.Context(), api.RewrapRequest{CurrentPassphrase: string(cur), NewPassphrase: string(next)})
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
	f.StringVar(&to, "to", "", "move the data keys to this KEK: an awskms: key URI, or passphrase")
	return cmd
}

// rewrapTo is sigil keys rewrap --to: the current passphrase is sent when
// one is given (a file or SIGIL_PASSPHRASE; the server needs it only while
// the KEK is derived from one), a new one is asked for --to passphrase.
func rewrapTo(cmd *cobra.Command, c *client.Client, to, currentFile, newFile string) error {
	req := api.RewrapRequest{To: to}
	if to != ca.ToPassphrase {
		if _, err := keybackend.ParseURI(to); err != nil {
			return fmt.Errorf("--to: %w", err)
		}
	}
	if currentFile != "" || os.Getenv("SIGIL_PASSPHRASE") != "" {
		cur, err := passphraseSource{file: currentFile, envVar: "SIGIL_PASSPHRASE", prompt: "Current passphrase"}.read(false)
		if err != nil {
			return err
		}
		req.CurrentPassphrase = string(cur)
		clear(cur)
	}
	if to == ca.ToPassphrase {
		next, err := passphraseSource{file: newFile, envVar: "SIGIL_NEW_PASSPHRASE", prompt: "New passphrase"}.read(true)
		if err != nil {
			return err
		}
		if err := checkNewPassphrase(next); err != nil {
			return err
		}
		req.NewPassphrase = string(next)
		clear(next)
	}
	resp, err := c.Rewrap(cmd.Context(), req)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "re-wrapped %d keys under %s (%s)\n", resp.Keys, resp.KEK, to)
	return nil
}

func keysBlockCmd() *cobra.Command {
	var cf clientFlags
	var file, format string
	cmd := &cobra.Command{
		Use:   "block --public-key FILE",
		Short: "Block a compromised key: refuse it in every later CSR and ACME account, revoke its certificates",
		Long: `Put a public key on the blocklist. FILE holds a PEM PUBLIC KEY, CERTIFICATE or
CERTIFICATE REQUEST. Every unexpired certificate with the key is revoked
(keyCompromise) in the same step; later CSRs and ACME accounts with it are
refused.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			data, err := os.ReadFile(file)
			if err != nil {
				return fmt.Errorf("--public-key: %w", err)
			}
			if _, err := api.ParsePublicKeyPEM(data); err != nil {
				return fmt.Errorf("--public-key %s: %w", file, err)
			}
			c, err := cf.connect(format)
			if err != nil {
				return err
			}
			resp, err := c.BlockKey(cmd.Context(), api.BlockKeyRequest{PublicKey: string(data)})
			if err != nil {
				return err
			}
			t := table{header: []string{"REVOKED SERIAL"}}
			for _, s := range resp.Revoked {
				t.rows = append(t.rows, []string{s})
			}
			if format == "text" {
				fmt.Fprintf(cmd.ErrOrStderr(), "blocked key %s; %d certificate(s) revoked\n", resp.SPKISHA256, len(resp.Revoked))
			}
			return render(cmd.OutOrStdout(), format, t, resp)
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&file, "public-key", "", "PEM public key, certificate or CSR (required)")
	addFormatFlag(cmd, &format)
	_ = cmd.MarkFlagRequired("public-key")
	return cmd
}

func keysShowCmd() *cobra.Command {
	var cf clientFlags
	var format string
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show one key: backend, URI, whether it can leave its HSM or KMS, its fingerprint checked live",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format == "csv" {
				return fmt.Errorf("--format csv: want table or json")
			}
			c, err := cf.connect(format)
			if err != nil {
				return err
			}
			d, err := c.Key(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			attested := "yes: the backend holds the recorded public key now"
			switch {
			case d.AttestationError != "":
				attested = "FAILED: " + d.AttestationError
			case !d.Attested:
				attested = "no (not in an HSM or KMS)"
			}
			uri := d.URI
			if uri == "" {
				uri = "-"
			}
			kek := d.KEK
			if kek == "" {
				kek = "-"
			}
			t := table{header: []string{"FIELD", "VALUE"}, rows: [][]string{
				{"ID", d.ID}, {"PURPOSE", d.Purpose}, {"ALGORITHM", d.Algorithm}, {"STATE", d.State},
				{"BACKEND", d.Backend}, {"URI", uri}, {"KEK", kek}, {"WHERE", d.Where},
				{"NON-EXTRACTABLE", fmt.Sprint(d.NonExtractable)}, {"NEVER EXTRACTABLE", fmt.Sprint(d.NeverExtractable)},
				{"PUBLIC KEY SHA-256", d.PublicKeySHA256}, {"ATTESTED", attested},
				{"CREATED", fmtTime(d.Created)}, {"LAST USED", fmtTime(d.LastUsed)},
			}}
			return render(cmd.OutOrStdout(), format, t, d)
		},
	}
	cf.register(cmd)
	addFormatFlag(cmd, &format)
	return cmd
}
