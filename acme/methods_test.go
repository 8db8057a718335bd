package acme

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestMethodNotAllowed: a wrong method on any ACME route is answered 405
// with an Allow header naming the route's methods and a malformed problem
// document, one case per route family; an unknown path stays 404.
func TestMethodNotAllowed(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Config{})
	p := ts.acme.Prefix()
	tests := []struct {
		name, method, path, allow string
	}{
		{"directory", http.MethodPost, "/directory", "GET, HEAD"},
		{"new-nonce", http.MethodPost, "/new-nonce", "GET, HEAD"},
		{"renewal-info", http.MethodPost, "/renewal-info/abc.def", "GET, HEAD"},
		{"new-account", http.MethodGet, "/new-account", "POST"},
		{"account", http.MethodGet, "/acct/1", "POST"},
		{"account orders", http.MethodDelete, "/acct/1/orders", "POST"},
		{"key-change", http.MethodPut, "/key-change", "POST"},
		{"new-order", http.MethodGet, "/new-order", "POST"},
		{"order", http.MethodGet, "/order/1", "POST"},
		{"finalize", http.MethodGet, "/order/1/finalize", "POST"},
		{"authz", http.MethodGet, "/authz/1", "POST"},
		{"challenge", http.MethodPatch, "/chall/1", "POST"},
		{"certificate", http.MethodGet, "/cert/01", "POST"},
		{"revoke-cert", http.MethodHead, "/revoke-cert", "POST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequest(tt.method, ts.srv.URL+p+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := ts.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusMethodNotAllowed {
				t.Fatalf("%s %s: %d %s, want 405", tt.method, tt.path, resp.StatusCode, body)
			}
			if got := resp.Header.Get("Allow"); got != tt.allow {
				t.Errorf("Allow = %q, want %q", got, tt.allow)
			}
			if resp.Header.Get("Replay-Nonce") == "" {
				t.Error("no Replay-Nonce on a 405")
			}
			if tt.method == http.MethodHead {
				return // no body to read
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type = %q, want application/problem+json", ct)
			}
			var prob Problem
			if err := json.Unmarshal(body, &prob); err != nil {
				t.Fatalf("body %q: %v", body, err)
			}
			if prob.Type != TypeMalformed || prob.Status != http.StatusMethodNotAllowed || !strings.Contains(prob.Detail, tt.allow) {
				t.Errorf("problem %+v, want %s, status 405, a detail naming %s", prob, TypeMalformed, tt.allow)
			}
		})
	}
	t.Run("unknown path", func(t *testing.T) {
		t.Parallel()
		resp, err := ts.srv.Client().Get(ts.srv.URL + p + "/no-such-thing")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || resp.Header.Get("Allow") != "" {
			t.Errorf("unknown path: %d, Allow %q; want 404 and no Allow", resp.StatusCode, resp.Header.Get("Allow"))
		}
	})
}
