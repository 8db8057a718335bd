package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/sigil-ca/sigil/api"
)

// Config configures a Client.
type Config struct {
	// Server is the base URL of Sigil's HTTPS listener.
	Server string
	// Token is the bearer token sent with every request; empty sends none
	// (a renewal over mTLS, a bundle fetched with the client certificate).
	Token string
	// HTTP carries the requests (TLS roots, client certificate, timeouts).
	HTTP *http.Client
	// MaxResponseBytes bounds a JSON answer (default 64 MiB); a streamed
	// export is not bounded.
	MaxResponseBytes int64
}

// Client calls the /v1 API. It is safe for concurrent use.
type Client struct {
	base    string
	token   string
	http    *http.Client
	maxBody int64
}

// New checks cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.Server)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("client: server %q is not an http(s):// URL", cfg.Server)
	}
	if cfg.HTTP == nil {
		return nil, errors.New("client: an HTTP client is required")
	}
	if cfg.MaxResponseBytes <= 0 {
		cfg.MaxResponseBytes = 64 << 20
	}
	return &Client{base: strings.TrimRight(cfg.Server, "/"), token: cfg.Token, http: cfg.HTTP, maxBody: cfg.MaxResponseBytes}, nil
}

// Error is a /v1 error answer.
type Error struct {
	// Status is the HTTP status code.
	Status int
	// Kind is the error kind ("not_found", "forbidden", ...), empty when
	// the body was not a /v1 error.
	Kind string
	// Detail says what went wrong, for a person.
	Detail      string
	Subproblems []api.Subproblem
}

// Error is the detail and the kind, or the status when the server sent no
// detail.
func (e *Error) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("server returned %d %s", e.Status, http.StatusText(e.Status))
	}
	return fmt.Sprintf("%s (%s)", e.Detail, e.Kind)
}

// IsKind reports whether err is an *Error of the given kind.
func IsKind(err error, kind string) bool {
	var e *Error
	return errors.As(err, &e) && e.Kind == kind
}

// errorFrom reads an error answer.
func errorFrom(resp *http.Response) *Error {
	e := &Error{Status: resp.StatusCode}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var body api.ErrorResponse
	if json.Unmarshal(data, &body) == nil {
		e.Kind, e.Detail, e.Subproblems = body.Error, body.Detail, body.Subproblems
	}
	return e
}

// send sends method path with in (if non-nil) as its JSON body.
func (c *Client) send(ctx context.Context, hc *http.Client, method, path string, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("%s %s: encode request: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, errorFrom(resp)
	}
	return resp, nil
}

// do sends a request and decodes a JSON answer into out (if non-nil). It
// returns the status code of a successful answer; with want, any other
// success status is an error too (the endpoint never answers it).
func (c *Client) do(ctx context.Context, method, path string, in, out any, want ...int) (int, error) {
	resp, err := c.send(ctx, c.http, method, path, in)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if len(want) > 0 && !slices.Contains(want, resp.StatusCode) {
		return 0, fmt.Errorf("%s %s: unexpected status %d %s", method, path, resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBody))
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return 0, fmt.Errorf("%s %s: decode response: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

// Stream GETs path (with its query) and returns the answer for the caller
// to read and close: no overall timeout (an export takes as long as it
// takes; ctx ends it); an error answer is an *Error.
func (c *Client) Stream(ctx context.Context, path string) (*http.Response, error) {
	hc := *c.http
	hc.Timeout = 0
	return c.send(ctx, &hc, http.MethodGet, path, nil)
}

func withQuery(path string, q url.Values) string {
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}
