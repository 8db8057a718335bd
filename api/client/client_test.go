package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/api/client"
)

// seen is one request as the fake server received it.
type seen struct {
	method, uri, auth, ctype, body string
}

// fakeServer answers every request with status and body, and reports what
// it was sent.
func fakeServer(t *testing.T, status int, body string) (*client.Client, *seen) {
	t.Helper()
	var got seen
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = seen{r.Method, r.URL.RequestURI(), r.Header.Get("Authorization"), r.Header.Get("Content-Type"), string(b)}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	c, err := client.New(client.Config{Server: srv.URL + "/", Token: "tok", HTTP: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	return c, &got
}

func TestNew(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  client.Config
	}{
		{"no scheme", client.Config{Server: "ca.test:8443", HTTP: http.DefaultClient}},
		{"ftp", client.Config{Server: "ftp://ca.test", HTTP: http.DefaultClient}},
		{"no host", client.Config{Server: "https://", HTTP: http.DefaultClient}},
		{"no HTTP client", client.Config{Server: "https://ca.test"}},
	} {
		if _, err := client.New(tc.cfg); err == nil {
			t.Errorf("%s: New accepted %+v", tc.name, tc.cfg)
		}
	}
}

// TestRequests: each call sends its method, path (escaped), query, bearer
// token and JSON body, and decodes the answer into the server's type.
func TestRequests(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("sign", func(t *testing.T) {
		t.Parallel()
		c, got := fakeServer(t, http.StatusCreated, `{"serial":"0a","chain":"PEM"}`)
		sr, err := c.Sign(ctx, api.SignRequest{CSR: "csr", Profile: "tls-server"})
		if err != nil || sr.Serial != "0a" || sr.Chain != "PEM" {
			t.Fatalf("Sign = %+v, %v", sr, err)
		}
		want := seen{"POST", "/v1/sign", "Bearer tok", "application/json", `{"csr":"csr","profile":"tls-server"}`}
		if *got != want {
			t.Errorf("sent %+v, want %+v", *got, want)
		}
	})
	t.Run("certificate", func(t *testing.T) {
		t.Parallel()
		c, got := fakeServer(t, http.StatusOK, `{"serial":"0a"}`)
		if _, err := c.Certificate(ctx, "a/b"); err != nil {
			t.Fatal(err)
		}
		if got.method != "GET" || got.uri != "/v1/certificates/a%2Fb" || got.ctype != "" || got.body != "" {
			t.Errorf("sent %+v", *got)
		}
	})
	t.Run("list with query", func(t *testing.T) {
		t.Parallel()
		c, got := fakeServer(t, http.StatusOK, `{"certificates":[{"serial":"01"},{"serial":"02"}],"next_cursor":"n"}`)
		l, err := c.Certificates(ctx, url.Values{"limit": {"2"}, "name": {"a b"}})
		if err != nil || len(l.Certificates) != 2 || l.NextCursor != "n" {
			t.Fatalf("Certificates = %+v, %v", l, err)
		}
		if got.uri != "/v1/certificates?limit=2&name=a+b" {
			t.Errorf("sent %s", got.uri)
		}
	})
	t.Run("delete managed", func(t *testing.T) {
		t.Parallel()
		c, got := fakeServer(t, http.StatusOK, `{"name":"web"}`)
		if _, err := c.DeleteManaged(ctx, "web", true); err != nil {
			t.Fatal(err)
		}
		if got.method != "DELETE" || got.uri != "/v1/managed/web?destroy_keys=true" {
			t.Errorf("sent %+v", *got)
		}
	})
	t.Run("no token", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if h := r.Header.Get("Authorization"); h != "" {
				t.Errorf("Authorization %q sent without a token", h)
			}
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, `{"serial":"0b"}`)
		}))
		defer srv.Close()
		c, err := client.New(client.Config{Server: srv.URL, HTTP: srv.Client()})
		if err != nil {
			t.Fatal(err)
		}
		sr, repeated, err := c.Renew(ctx, api.RenewRequest{})
		if err != nil || repeated || sr.Serial != "0b" {
			t.Errorf("Renew = %+v, %v, %v", sr, repeated, err)
		}
	})
}

// TestStatuses: an error answer is a *client.Error with the body's kind,
// detail and subproblems; a success status an endpoint never answers is
// refused; Renew tells a repeated renewal (200) from a new one (201).
func TestStatuses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, _ := fakeServer(t, http.StatusForbidden,
		`{"error":"rejected","detail":"names refused","subproblems":[{"identifier":"*.a.test","error":"rejected","detail":"wildcard"}]}`)
	_, err := c.Sign(ctx, api.SignRequest{})
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != http.StatusForbidden || ce.Kind != "rejected" || ce.Detail != "names refused" ||
		len(ce.Subproblems) != 1 || ce.Subproblems[0].Identifier != "*.a.test" {
		t.Fatalf("Sign refused: %#v", err)
	}
	if err.Error() != "names refused (rejected)" || !client.IsKind(err, "rejected") || client.IsKind(err, "conflict") {
		t.Errorf("error %q", err)
	}

	c, _ = fakeServer(t, http.StatusBadGateway, `<html>proxy</html>`)
	if _, err := c.Tokens(ctx); err == nil || err.Error() != "server returned 502 Bad Gateway" {
		t.Errorf("a non-JSON error: %v", err)
	}

	c, _ = fakeServer(t, http.StatusOK, `{"serial":"0a"}`)
	if _, err := c.Sign(ctx, api.SignRequest{}); err == nil || !strings.Contains(err.Error(), "unexpected status 200") {
		t.Errorf("Sign answered 200: %v, want refused", err)
	}
	if _, repeated, err := c.Renew(ctx, api.RenewRequest{}); err != nil || !repeated {
		t.Errorf("Renew answered 200: repeated %v, %v", repeated, err)
	}

	c, _ = fakeServer(t, http.StatusOK, `{"serial":`)
	if _, err := c.Certificate(ctx, "0a"); err == nil || !strings.Contains(err.Error(), "decode response") {
		t.Errorf("a truncated answer: %v", err)
	}
}

// TestStream: an export is handed over unread, with its query; an
// error answer is a *client.Error.
func TestStream(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, got := fakeServer(t, http.StatusOK, "{\"type\":\"event\"}\n")
	resp, err := c.ExportAudit(ctx, url.Values{"format": {"ndjson"}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var line map[string]string
	if json.Unmarshal(b, &line) != nil || line["type"] != "event" || got.uri != "/v1/audit/export?format=ndjson" {
		t.Errorf("export %q from %s", b, got.uri)
	}
	c, _ = fakeServer(t, http.StatusNotFound, `{"error":"not_found","detail":"no such endpoint"}`)
	if _, err := c.ExportCertificates(ctx, nil); !client.IsKind(err, "not_found") {
		t.Errorf("refused export: %v", err)
	}
}
