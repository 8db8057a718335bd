package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
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

// apiClient calls the /v1 API.
type apiClient struct {
	base  string
	token string
	http  *http.Client
}

func (c *clientFlags) client() (*apiClient, error) {
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
	return &apiClient{base: strings.TrimRight(c.server, "/"), token: tok,
		http: &http.Client{Transport: tr, Timeout: 60 * time.Second}}, nil
}

// connect checks the output format (when the command lists) and returns a
// client for the server.
func (c *clientFlags) connect(format string) (*apiClient, error) {
	if err := checkFormat(format); err != nil {
		return nil, err
	}
	return c.client()
}

// apiError is the server's {"error","detail"} body.
type apiError struct {
	Status int
	Kind   string `json:"error"`
	Detail string `json:"detail"`
}

func (e *apiError) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("server returned %d %s", e.Status, http.StatusText(e.Status))
	}
	return fmt.Sprintf("%s (%s)", e.Detail, e.Kind)
}

// do sends a request and decodes a JSON answer into out (if non-nil).
func (c *apiClient) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		ae := &apiError{Status: resp.StatusCode}
		_ = json.Unmarshal(data, ae)
		return ae
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: decode response: %w", method, path, err)
		}
	}
	return nil
}

// fetchList GETs a paginated list at path with the non-empty params,
// following next_cursor when all is set. It returns every item read and the
// cursor of the first unread page ("" when there is none).
func fetchList[P, E any](ctx context.Context, c *apiClient, path string, params map[string]string, limit int, all bool, unpack func(P) ([]E, string)) ([]E, string, error) {
	q := url.Values{}
	for k, v := range params {
		if v != "" {
			q.Set(k, v)
		}
	}
	q.Set("limit", strconv.Itoa(limit))
	out := []E{}
	for {
		var page P
		if err := c.do(ctx, "GET", path+"?"+q.Encode(), nil, &page); err != nil {
			return nil, "", err
		}
		items, next := unpack(page)
		out = append(out, items...)
		if !all || next == "" {
			return out, next, nil
		}
		q.Set("cursor", next)
	}
}
