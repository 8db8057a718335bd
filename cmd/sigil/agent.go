package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/jonboulle/clockwork"
	"github.com/spf13/cobra"

	"github.com/sigil-ca/sigil/agent"
)

func agentCmd() *cobra.Command {
	var cfg agent.Config
	var caFile, tokenFile, logFormat, logLevel string
	var once, force bool
	cmd := &cobra.Command{
		Use:   "agent --server URL --ca-file F --cert F --key F [--managed NAME --token-file T] [--exec CMD] [--once]",
		Short: "Keep a certificate and key on disk fresh: renew over mTLS, or fetch a CA-managed bundle",
		Long: `Keep a certificate and its key fresh for a server that reads them from disk.

The agent renews when the certificate reaches its renewal point: a random time
in the CA's ACME Renewal Information window (RFC 9773) when it offers one,
else --renew-at of the lifetime. It renews over mutual TLS, presenting the
current pair to POST /v1/renew (same key; --rekey for a new one), or with
--managed fetches the CA-managed bundle (chain and key) from
/v1/managed/NAME/bundle, presenting the current pair and/or the bearer token
in --token-file. Files are replaced atomically (the key mode 0600, the chain
0644; give --cert and --key the same path for one combined file), then --exec
runs through sh -c. Failures are retried with exponential backoff; a working
certificate is never removed or overwritten on failure.

--once renews if due (or with --force) and exits: 0 when nothing was due or
it renewed, non-zero on failure (for cron).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if caFile != "" {
				data, err := os.ReadFile(caFile)
				if err != nil {
					return fmt.Errorf("--ca-file: %w", err)
				}
				cfg.RootCAs = x509.NewCertPool()
				if !cfg.RootCAs.AppendCertsFromPEM(data) {
					return fmt.Errorf("--ca-file %s holds no PEM certificate", caFile)
				}
			}
			if tokenFile != "" {
				data, err := os.ReadFile(tokenFile)
				if err != nil {
					return fmt.Errorf("--token-file: %w", err)
				}
				cfg.Token = agent.Secret(strings.TrimSpace(string(data)))
				clear(data)
				if cfg.Token == "" {
					return fmt.Errorf("--token-file %s is empty", tokenFile)
				}
			}
			if tokenFile != "" && cfg.Managed == "" {
				return errors.New("--token-file is for --managed; renewal over mTLS needs no token")
			}
			if cfg.Rekey && cfg.Managed != "" {
				return errors.New("--rekey renews over mTLS; a managed certificate's key is the CA's to change")
			}
			if logFormat != "text" && logFormat != "json" {
				return fmt.Errorf("--log-format %q: want text or json", logFormat)
			}
			cfg.Clock = clockwork.NewRealClock()
			cfg.Logger = newLogger(cmd.ErrOrStderr(), LogConfig{Level: logLevel, Format: logFormat})
			a, err := agent.New(cfg)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			if once {
				return a.Once(ctx, force)
			}
			return a.Run(ctx, force)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Server, "server", envOr("SIGIL_SERVER", "https://127.0.0.1:8443"), "server URL (or SIGIL_SERVER)")
	f.StringVar(&caFile, "ca-file", os.Getenv("SIGIL_CA_FILE"), "root certificate(s) to trust for the server and the certificates it issues (or SIGIL_CA_FILE; default: the system roots)")
	f.StringVar(&cfg.CertFile, "cert", "", "certificate chain file to keep fresh (leaf first)")
	f.StringVar(&cfg.KeyFile, "key", "", "private key file (PKCS#8 PEM; the same path as --cert for one combined file)")
	f.StringVar(&cfg.Managed, "managed", "", "fetch this CA-managed certificate's bundle instead of renewing over mTLS")
	f.StringVar(&tokenFile, "token-file", "", "file holding an API token for --managed (sent as a bearer token)")
	f.StringVar(&cfg.Exec, "exec", "", "shell command to run after each renewal, e.g. 'systemctl reload nginx'")
	f.BoolVar(&once, "once", false, "renew if due, then exit (for cron)")
	f.BoolVar(&force, "force", false, "renew now even if not due (then, without --once, keep going)")
	f.Float64Var(&cfg.RenewAt, "renew-at", 2.0/3, "fraction of the lifetime after which to renew when the server offers no ARI window")
	f.BoolVar(&cfg.ARI, "ari", true, "ask the server's ACME renewal information (RFC 9773) when to renew")
	f.StringVar(&cfg.ACMEDirectory, "acme-directory", "", "ACME directory whose renewalInfo to ask (default: SERVER/acme/directory)")
	f.BoolVar(&cfg.Rekey, "rekey", false, "generate a new key of the same type at each renewal")
	f.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	_ = cmd.MarkFlagRequired("cert")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}
