package main

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
)

func devCmd() *cobra.Command {
	var dataDir, httpsAddr, httpAddr string
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a complete development CA in one command (NOT for production)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir := dataDir
			if dir == "" {
				d, err := os.MkdirTemp("", "sigil-dev-")
				if err != nil {
					return err
				}
				dir = d
			}
			dir, err := filepath.Abs(dir)
			if err != nil {
				return err
			}
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
			}, pass)
			if err != nil {
				return err
			}
			cfg, err := LoadConfig(filepath.Join(dir, "sigil.yaml"))
			if err != nil {
				return err
			}
			log := newLogger(cfg.Log)
			s, err := startServer(cmd.Context(), cfg, pass, log, true)
			if err != nil {
				return err
			}
			files := map[string][]byte{
				"root.pem":         pemBytes(res.Root.Raw),
				"intermediate.pem": pemBytes(res.Intermediate.Raw),
			}
			for name, data := range files {
				if err := writeFileAtomic(filepath.Join(dir, name), data, 0o644); err != nil {
					return err
				}
			}
			tokenPath := filepath.Join(dir, "admin.token")
			if err := writeFileAtomic(tokenPath, []byte(res.AdminToken+"\n"), 0o600); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprint(out, devBanner)
			fmt.Fprintf(out, "  data:          %s\n", dir)
			fmt.Fprintf(out, "  root:          %s\n", filepath.Join(dir, "root.pem"))
			fmt.Fprintf(out, "  intermediate:  %s\n", filepath.Join(dir, "intermediate.pem"))
			fmt.Fprintf(out, "  admin token:   %s (mode 0600)\n", tokenPath)
			fmt.Fprintf(out, "  API:           %s/v1/\n", s.HTTPSURL())
			fmt.Fprintf(out, "  roots:         %s/roots.pem\n", s.HTTPURL())
			fmt.Fprintf(out, "  metrics:       %s/metrics\n", s.HTTPSURL())
			fmt.Fprintf(out, "\nTry:\n  export SIGIL_TOKEN=$(cat %s)\n  sigil cert issue --server %s --ca-file %s --san app.localhost --profile tls-server --key-out app.key --out app.pem\n\n",
				tokenPath, s.HTTPSURL(), filepath.Join(dir, "root.pem"))
			return s.runUntilSignal()
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data", "", "data directory (default: a new temporary directory)")
	f.StringVar(&httpsAddr, "https-addr", "127.0.0.1:8443", "HTTPS listen address")
	f.StringVar(&httpAddr, "http-addr", "127.0.0.1:8080", "HTTP listen address")
	return cmd
}

const devBanner = `
  ************************************************************************
  *  SIGIL DEV MODE: NOT FOR PRODUCTION.                                 *
  *  The passphrase is random and held only in memory; weak KDF settings; *
  *  the admin token is written to disk. Use "sigil init" + "serve".     *
  ************************************************************************

`
