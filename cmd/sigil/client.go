package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/sigil-ca/sigil/api/client"
)

// clientFlags are shared by every command that talks to a running server.
type clientFlags struct {
	server string
	token  string
	caFile string
}

func (c *clientFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&c.server, "server", envOr("SIGIL_SERVER", "https://127.0.0.1:8443"), "server URL (or SIGIL_SERVER)")
	f.StringVar(&c.token, "token", "", "API token (default: SIGIL_TOKEN)")
	f.StringVar(&c.caFile, "ca-file", os.Getenv("SIGIL_CA_FILE"), "root certificate to trust for the server (or SIGIL_CA_FILE)")
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func (c *clientFlags) client() (*client.Client, error) {
	tok := c.token
	if tok == "" {
		tok = os.Getenv("SIGIL_TOKEN")
	}
	if tok == "" {
		return nil, errors.New("no token: pass --token or set SIGIL_TOKEN")
	}
	u, err := url.Parse(c.server)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("--server %q must be an https:// URL", c.server)
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.caFile != "" {
		pemData, err := os.ReadFile(c.caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemData) {
			return nil, fmt.Errorf("--ca-file %s holds no PEM certificate", c.caFile)
		}
		tlsCfg.RootCAs = pool
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	tr.MaxIdleConnsPerHost = 256
	return client.New(client.Config{Server: c.server, Token: tok,
		HTTP: &http.Client{Transport: tr, Timeout: 60 * time.Second}})
}

// connect checks the output format (when the command lists) and returns a
// client for the server.
func (c *clientFlags) connect(format string) (*client.Client, error) {
	if err := checkFormat(format); err != nil {
		return nil, err
	}
	return c.client()
}

// fetchList reads a paginated list with the non-empty params, one page at a
// time through page, following next_cursor when all is set. It returns
// every item read and the cursor of the first unread page ("" when there is
// none).
func fetchList[P, E any](ctx context.Context, page func(context.Context, url.Values) (P, error), params map[string]string, limit int, all bool, unpack func(P) ([]E, string)) ([]E, string, error) {
	q := url.Values{}
	for k, v := range params {
		if v != "" {
			q.Set(k, v)
		}
	}
	q.Set("limit", strconv.Itoa(limit))
	out := []E{}
	for {
		p, err := page(ctx, q)
		if err != nil {
			return nil, "", err
		}
		items, next := unpack(p)
		out = append(out, items...)
		if !all || next == "" {
			return out, next, nil
		}
		q.Set("cursor", next)
	}
}
