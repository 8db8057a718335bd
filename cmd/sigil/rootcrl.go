package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/spf13/cobra"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/keystore"
)

func caCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "ca", Short: "The hierarchy: the root's CRL (signed offline) and intermediate rotation"}
	cmd.AddCommand(caRootCRLCmd(), caRotateIntermediateCmd(), caIntermediatesCmd())
	return cmd
}

func caRootCRLCmd() *cobra.Command {
	var configPath, passphraseFile string
	var validity time.Duration
	cmd := &cobra.Command{
		Use:   "root-crl --config DIR/sigil.yaml",
		Short: "Sign the root's next CRL with the root key and store it; sigil serve publishes it",
		Long: `Unwraps the root key for this one signature, signs the root's next CRL
(number one above the stored one, listing every revoked certificate the root
issued: intermediates and the audit signer) and stores it in the database
with its audit event. A running sigil serve picks it up within
crl.root_reload and serves it at /crl/ROOT-ID.crl, the CRL distribution
point of the intermediate. sigil init signs the first; sign the next before
its nextUpdate (the server warns crl.root_warn ahead), or after revoking an
intermediate. It works on the database directly, whether or not the server
runs. The passphrase comes from --passphrase-file, SIGIL_PASSPHRASE or a
prompt.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if validity < ca.MinRootCRLValidity || validity > ca.MaxRootCRLValidity {
				return fmt.Errorf("--validity %s: want %s to %s", validity, ca.MinRootCRLValidity, ca.MaxRootCRLValidity)
			}
			cfg, err := LoadConfig(configPath)
			if err != nil {
				return err
			}
			// store.Open would create an empty database at a wrong path.
			if _, err := os.Stat(cfg.DatabasePath()); err != nil && !cfg.Store.postgres() {
				return fmt.Errorf("database %s: %w (run sigil init first)", cfg.DatabasePath(), err)
			}
			var pass []byte
			readPass := func() ([]byte, error) {
				var err error
				pass, err = passphraseSource{file: passphraseFile, envVar: "SIGIL_PASSPHRASE", prompt: "CA passphrase"}.read(false)
				return pass, err
			}
			res, err := signRootCRL(cmd.Context(), cfg, readPass, validity)
			clear(pass)
			if err != nil {
				return err
			}
			rec := res.Record
			crlURL := strings.TrimRight(cfg.ExternalURL, "/") + "/crl/" + rec.IssuerID + ".crl"
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Signed root CRL number %d: %d revoked certificate(s), next update %s\n",
				rec.Number, len(res.Revoked), rec.NextUpdate.UTC().Format(time.RFC3339))
			for _, s := range res.Revoked {
				fmt.Fprintf(out, "  revoked: %s\n", s)
			}
			fmt.Fprintf(out, "Served at %s (sigil serve reloads it within crl.root_reload). Sign the next one before %s.\n",
				crlURL, rec.NextUpdate.UTC().Format(time.DateOnly))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&configPath, "config", "sigil.yaml", "path to sigil.yaml")
	f.StringVar(&passphraseFile, "passphrase-file", "", "file holding the CA passphrase (else SIGIL_PASSPHRASE or a prompt)")
	f.DurationVar(&validity, "validity", ca.DefaultRootCRLValidity,
		"nextUpdate - thisUpdate; at most a year (8760h), the CA/Browser Forum limit for CRLs about CA certificates")
	return cmd
}

// signRootCRL opens the database of cfg, unlocks the keystore (with the
// passphrase readPass returns, asked only when the KEK is derived from one)
// and signs and stores the root's next CRL; the root key is
// unwrapped inside ca.SignRootCRL only. The audit head is signed before
// returning, as sigil init does, so the events written here need no server
// to be covered by a checkpoint.
func signRootCRL(ctx context.Context, cfg *Config, readPass func() ([]byte, error), validity time.Duration) (res *ca.RootCRL, err error) {
	clk := clockwork.NewRealClock()
	st, err := openStore(ctx, cfg, clk, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	defer func() { err = errors.Join(err, st.Close()) }()
	keys := newKeyBackends() // the root may be in an HSM attached for this
	defer func() { err = errors.Join(err, keys.Close()) }()
	kekBackend, err := keystore.ActiveKEKBackend(ctx, st)
	if err != nil {
		return nil, fmt.Errorf("unlock keys: %w", err)
	}
	var passphrase []byte
	if !keystore.IsRemoteKEK(kekBackend) {
		if passphrase, err = readPass(); err != nil {
			return nil, err
		}
	}
	ks, err := keystore.UnlockWith(ctx, st, clk, passphrase, kekOpener(keys))
	if err != nil {
		return nil, fmt.Errorf("unlock keys: %w", err)
	}
	ks.SetBackends(keys)
	cp, err := ca.UnlockCheckpointer(ctx, st, ks, clk)
	if err != nil {
		return nil, fmt.Errorf("audit key: %w", err)
	}
	st.SetCheckpointer(cp)
	res, err = ca.SignRootCRL(ctx, st, ks, ca.RootCRLConfig{Validity: validity, Actor: "cli", Clock: clk})
	if err != nil {
		return nil, err
	}
	if err := st.Checkpoint(ctx); err != nil {
		return nil, fmt.Errorf("root CRL number %d is stored, but the audit checkpoint failed (the server signs one at its next start): %w", res.Record.Number, err)
	}
	return res, nil
}
