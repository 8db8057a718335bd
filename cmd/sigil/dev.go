package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/sigil-ca/sigil/internal/atomicfile"
)

func devCmd() *cobra.Command {
	var dataDir, httpsAddr, httpAddr, overlayPath string
	var af acmeFlags
	var storeURL string
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a complete development CA in one command (NOT for production)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Read the overlay first: a typo should fail before a CA is made.
			var overlay []byte
			if overlayPath != "" {
				var err error
				if overlay, err = os.ReadFile(overlayPath); err != nil {
					return fmt.Errorf("--config: %w", err)
				}
			}
			dir, err := prepareDevDir(dataDir)
			if err != nil {
				return err
			}
			// A dev CA cannot be reopened (its passphrase dies with the
			// process), so its data goes when the process does, or when it
			// fails to start.
			if dataDir == "" {
				defer os.RemoveAll(dir)
			}
			started := false
			defer func() {
				if !started {
					os.RemoveAll(dir)
				}
			}()
			// The passphrase lives only in this process's memory: the data
			// cannot be reopened after it exits, which is the point.
			raw := make([]byte, 32)
			if _, err := rand.Read(raw); err != nil {
				return err
			}
			pass := []byte(base64.RawURLEncoding.EncodeToString(raw))
			res, err := runInit(cmd.Context(), initOptions{
				dir: dir, name: "Sigil Dev CA", rootKey: "ecdsa-p256", intKey: "ecdsa-p256",
				rootValidity: 10 * 365 * 24 * time.Hour, intValidity: 5 * 365 * 24 * time.Hour,
				httpsAddr: httpsAddr, httpAddr: httpAddr, names: []string{"localhost", "127.0.0.1"}, fastKDF: true,
				store: storeURL,
			}, pass)
			if err != nil {
				return err
			}
			cfg, err := LoadConfig(filepath.Join(dir, "sigil.yaml"))
			if err != nil {
				return err
			}
			if overlay != nil {
				if err := cfg.Overlay(overlay); err != nil {
					return fmt.Errorf("--config %s: %w", overlayPath, err)
				}
			}
			if err := af.apply(cmd, cfg); err != nil {
				return err
			}
			log := newLogger(cmd.ErrOrStderr(), cfg.Log)
			s, err := startServer(cmd.Context(), cfg, func() ([]byte, error) { return pass, nil }, log, true)
			if err != nil {
				return err
			}
			started = true
			files := map[string][]byte{
				"root.pem":         pemBytes(res.Root.Raw),
				"intermediate.pem": pemBytes(res.Intermediate.Raw),
			}
			for name, data := range files {
				if err := atomicfile.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
					return err
				}
			}
			tokenPath := filepath.Join(dir, "admin.token")
			if err := atomicfile.WriteFile(tokenPath, []byte(res.AdminToken+"\n"), 0o600); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprint(out, devBanner)
			fmt.Fprintf(out, "  data:          %s\n", dir)
			fmt.Fprintf(out, "  root:          %s\n", filepath.Join(dir, "root.pem"))
			fmt.Fprintf(out, "  intermediate:  %s\n", filepath.Join(dir, "intermediate.pem"))
			fmt.Fprintf(out, "  admin token:   %s (mode 0600)\n", tokenPath)
			fmt.Fprintf(out, "  API:           %s/v1/\n", s.HTTPSURL())
			fmt.Fprintf(out, "  auditor page:  %s/ui/ (log in with an auditor or admin token)\n", s.HTTPSURL())
			if cfg.ACME.On() {
				fmt.Fprintf(out, "  ACME:          %s/acme/directory\n", s.HTTPSURL())
			}
			fmt.Fprintf(out, "  OCSP:          %s/ocsp\n", s.HTTPURL())
			fmt.Fprintf(out, "  CRL:           %s/crl/%s.crl\n", s.HTTPURL(), s.auth.Intermediate().ID)
			fmt.Fprintf(out, "  root CRL:      %s/crl/%s.crl\n", s.HTTPURL(), s.auth.Root().ID)
			fmt.Fprintf(out, "  roots:         %s/roots.pem\n", s.HTTPURL())
			fmt.Fprintf(out, "  metrics:       %s/metrics\n", s.HTTPSURL())
			fmt.Fprintf(out, "\nTry:\n  export SIGIL_TOKEN=$(cat %s)\n  sigil cert issue --server %s --ca-file %s --san app.localhost --profile tls-server --key-out %s --out %s\n\n",
				tokenPath, s.HTTPSURL(), filepath.Join(dir, "root.pem"), filepath.Join(dir, "app.key"), filepath.Join(dir, "app.pem"))
			return s.runUntilSignal()
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data", "", "data directory (default: a new temporary directory)")
	f.StringVar(&storeURL, "store", "", "postgres://user@host:port/db: keep the records in an empty PostgreSQL database instead of SQLite in the data directory")
	f.StringVar(&httpsAddr, "https-addr", "127.0.0.1:8443", "HTTPS listen address")
	f.StringVar(&httpAddr, "http-addr", "127.0.0.1:8080", "HTTP listen address")
	f.StringVar(&overlayPath, "config", "", "a sigil.yaml fragment laid over the dev defaults (e.g. acme.endpoints with require_eab, a name policy)")
	af.register(cmd)
	return cmd
}

const devBanner = `
  ***************************************************************************
  *  SIGIL DEV MODE: NOT FOR PRODUCTION.                                    *
  *  The passphrase is random and held only in memory, the KDF is weak,     *
  *  and the admin token is written to disk. Use sigil init + sigil serve.  *
  ***************************************************************************

`

// devMarker marks a directory sigil dev created, so a later run may wipe it.
const devMarker = ".sigil-dev"

// prepareDevDir returns an empty directory for a new dev CA: a fresh temp
// directory, or dataDir, which must be missing, empty, or left by an earlier
// sigil dev (then it is wiped: its CA could never be reopened).
func prepareDevDir(dataDir string) (string, error) {
	if dataDir == "" {
		d, err := os.MkdirTemp("", "sigil-dev-")
		if err != nil {
			return "", err
		}
		return d, os.WriteFile(filepath.Join(d, devMarker), nil, 0o600)
	}
	dir, err := filepath.Abs(dataDir)
	if err != nil {
		return "", err
	}
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return "", fmt.Errorf("--data: %w", err)
	case len(entries) > 0:
		if _, err := os.Stat(filepath.Join(dir, devMarker)); err != nil {
			return "", fmt.Errorf("--data %s is not empty and was not made by sigil dev; refusing to touch it", dir)
		}
		if err := os.RemoveAll(dir); err != nil {
			return "", fmt.Errorf("--data: remove the previous dev CA: %w", err)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("--data: %w", err)
	}
	return dir, os.WriteFile(filepath.Join(dir, devMarker), nil, 0o600)
}
