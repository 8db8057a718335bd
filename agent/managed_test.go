package agent

import (
	"context"
	"crypto"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The server side of managed bundles is another package's work; these tests
// serve the agreed contract from a TLS listener (the CA's serving
// certificate, client certificates requested), with bundles the real CA
// issues:
//
//	GET /v1/managed/{name}/bundle  ->  200 {"name", "version", "serial",
//	"not_before", "not_after", "chain_pem", "key_pem"}, Cache-Control: no-store

// bundleServer serves one bundle and records who asked.
type bundleServer struct {
	mu      sync.Mutex
	status  int
	body    []byte
	auth    []string // Authorization headers
	clients []string // serials of the client certificates presented ("" for none)
}

// wire is a Bundle as the server sends it (a Secret never marshals).
func wire(b Bundle) map[string]any {
	return map[string]any{"name": b.Name, "version": b.Version, "serial": b.Serial, "not_before": b.NotBefore,
		"not_after": b.NotAfter, "chain_pem": b.ChainPEM, "key_pem": string(b.KeyPEM)}
}

func (b *bundleServer) set(status int, v any) {
	if bundle, ok := v.(Bundle); ok {
		v = wire(bundle)
	}
	data, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.status, b.body = status, data
}

func (b *bundleServer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/managed/{name}/bundle", func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.auth = append(b.auth, r.Header.Get("Authorization"))
		serial := ""
		if len(r.TLS.PeerCertificates) > 0 {
			serial = serialHex(r.TLS.PeerCertificates[0])
		}
		b.clients = append(b.clients, serial)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(b.status)
		_, _ = w.Write(b.body)
	})
	return mux
}

func (b *bundleServer) requests() (auth, clients []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string{}, b.auth...), append([]string{}, b.clients...)
}

// bundle is a managed bundle for a fresh key, issued by the CA.
func (e *caEnv) bundle(t *testing.T, name string, version int) (Bundle, crypto.Signer) {
	t.Helper()
	key := newKey(t)
	chain, leaf := e.issue(t, key, shortProfile, "managed.example.com")
	keyPEM, err := pkcs8PEM(key)
	if err != nil {
		t.Fatal(err)
	}
	return Bundle{Name: name, Version: version, Serial: fmt.Sprintf("%X", leaf.SerialNumber), NotBefore: leaf.NotBefore,
		NotAfter: leaf.NotAfter, ChainPEM: chain, KeyPEM: Secret(keyPEM)}, key
}

const testToken = "sigil_tok3n_s3cr3tvalue"

func (e *caEnv) managedAgent(t *testing.T, srv string, f pairFiles, hook string) *Agent {
	t.Helper()
	a := e.agentFor(t, f, func(c *Config) {
		c.Server, c.Managed, c.Token = srv, "web", testToken
		c.Exec = `echo "$SIGIL_SERIAL" >> ` + hook
	})
	return a
}

func TestManagedOnce(t *testing.T) {
	t.Parallel()
	e := newCAEnv(t, false)
	bs := &bundleServer{}
	srv := e.listen(t, bs.handler())
	f := newPairFiles(t)
	hook := filepath.Join(t.TempDir(), "hook.log")
	a := e.managedAgent(t, srv.URL, f, hook)
	ctx := context.Background()

	// Bootstrap: no files yet, so the token is the only credential.
	b1, k1 := e.bundle(t, "web", 1)
	bs.set(http.StatusOK, b1)
	if err := a.Once(ctx, false); err != nil {
		t.Fatalf("first fetch: %v", err)
	}
	got := onDisk(t, f)
	if serialHex(got.Leaf) != strings.ToLower(b1.Serial) || !samePublic(got.Leaf.PublicKey, k1.Public()) {
		t.Fatalf("on disk: serial %s, want %s with its key", serialHex(got.Leaf), b1.Serial)
	}
	checkModes(t, f)
	checkClean(t, f.dir)

	// The same bundle again: nothing to do, nothing written, no hook.
	before := snapshot(t, f.dir)
	if err := a.Once(ctx, true); err != nil {
		t.Fatalf("same bundle: %v", err)
	}
	if !mapsEqual(snapshot(t, f.dir), before) {
		t.Error("the same bundle was written again")
	}

	// A renewed bundle with a new key replaces the pair; the current
	// certificate is presented along with the token.
	e.clk.Advance(time.Minute)
	b2, k2 := e.bundle(t, "web", 2)
	bs.set(http.StatusOK, b2)
	if err := a.Once(ctx, true); err != nil {
		t.Fatalf("renewed bundle: %v", err)
	}
	if got := onDisk(t, f); serialHex(got.Leaf) != strings.ToLower(b2.Serial) || !samePublic(got.Leaf.PublicKey, k2.Public()) {
		t.Fatalf("on disk: serial %s, want %s with its key", serialHex(got.Leaf), b2.Serial)
	}

	// A replica that lags behind serves the older bundle: keep the newer.
	bs.set(http.StatusOK, b1)
	before = snapshot(t, f.dir)
	if err := a.Once(ctx, true); err != nil {
		t.Fatalf("older bundle: %v", err)
	}
	if !mapsEqual(snapshot(t, f.dir), before) {
		t.Error("an older bundle replaced a newer one")
	}

	auth, clients := bs.requests()
	for i, h := range auth {
		if h != "Bearer "+testToken {
			t.Errorf("request %d: Authorization %q", i, h)
		}
	}
	want := []string{"", strings.ToLower(b1.Serial), strings.ToLower(b1.Serial), strings.ToLower(b2.Serial)}
	if fmt.Sprint(clients) != fmt.Sprint(want) {
		t.Errorf("client certificates presented %v, want %v", clients, want)
	}
	if got := lines(t, hook); fmt.Sprint(got) != fmt.Sprint([]string{strings.ToLower(b1.Serial), strings.ToLower(b2.Serial)}) {
		t.Errorf("hook ran for %v", got)
	}
	for _, secret := range []string{testToken, pemBody(string(b1.KeyPEM)), pemBody(string(b2.KeyPEM))} {
		if strings.Contains(e.logs.String(), secret) {
			t.Errorf("a secret reached the log:\n%s", e.logs)
		}
	}
}

// pemBody is the base64 of a PEM block, without its armour.
func pemBody(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[1:len(lines)-1], "")[:40]
}

func TestManagedRefusesBadBundles(t *testing.T) {
	t.Parallel()
	e := newCAEnv(t, false)
	bs := &bundleServer{}
	srv := e.listen(t, bs.handler())
	f := newPairFiles(t)
	a := e.managedAgent(t, srv.URL, f, filepath.Join(t.TempDir(), "hook.log"))
	good, _ := e.bundle(t, "web", 1)
	bs.set(http.StatusOK, good)
	if err := a.Once(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	other, _ := e.bundle(t, "web", 2)
	foreign := newCAEnv(t, false)
	alien, _ := foreign.bundle(t, "web", 3)
	for _, tc := range []struct {
		name   string
		status int
		body   any
		want   string
	}{
		{"another certificate's key", 200, func() Bundle { b, _ := e.bundle(t, "web", 2); b.KeyPEM = good.KeyPEM; return b }(), "certifies another key"},
		{"serial not the leaf's", 200, func() Bundle { b := other; b.Serial = good.Serial; return b }(), "is not the leaf's"},
		{"validity not the leaf's", 200, func() Bundle { b := other; b.NotAfter = b.NotAfter.Add(time.Hour); return b }(), "is not the leaf's"},
		{"another name", 200, func() Bundle { b := other; b.Name = "db"; return b }(), `for "db", not "web"`},
		{"another CA", 200, alien, "does not verify"},
		{"key not PEM", 200, func() Bundle { b := other; b.KeyPEM = "not a key"; return b }(), "not one PKCS#8 PRIVATE KEY PEM block"},
		{"empty chain", 200, func() Bundle { b := other; b.ChainPEM = ""; return b }(), "no certificate in the chain"},
		{"not found", 404, map[string]string{"error": "not_found", "detail": "no managed certificate web"}, "no managed certificate web"},
		{"not JSON", 200, "<html>", "decode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bs.set(tc.status, tc.body)
			before := snapshot(t, f.dir)
			err := a.Once(context.Background(), true)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Once: %v, want an error saying %q", err, tc.want)
			}
			if !mapsEqual(snapshot(t, f.dir), before) {
				t.Error("a refused bundle changed the files")
			}
			if strings.Contains(err.Error(), pemBody(string(other.KeyPEM))) {
				t.Error("the error quotes the key")
			}
		})
	}
}

// TestManagedRun: the agent fetches at start, then at the renewal point;
// until the CA has renewed, it retries with backoff, quietly.
func TestManagedRun(t *testing.T) {
	t.Parallel()
	e := newCAEnv(t, false)
	bs := &bundleServer{}
	srv := e.listen(t, bs.handler())
	f := newPairFiles(t)
	a := e.managedAgent(t, srv.URL, f, filepath.Join(t.TempDir(), "hook.log"))
	b1, _ := e.bundle(t, "web", 1)
	bs.set(http.StatusOK, b1)
	start(t, a, false)
	e.blocked(t)
	first := onDisk(t, f).Leaf
	if serialHex(first) != strings.ToLower(b1.Serial) {
		t.Fatalf("on disk %s, want %s", serialHex(first), b1.Serial)
	}
	e.clk.Advance(lifetimePoint(first, 2.0/3).Sub(e.clk.Now()))
	e.blocked(t)
	if !strings.Contains(e.logs.String(), "the CA has not renewed the managed certificate yet") {
		t.Errorf("no note that the CA has not renewed yet:\n%s", e.logs)
	}
	b2, _ := e.bundle(t, "web", 2)
	bs.set(http.StatusOK, b2)
	e.clk.Advance(a.cfg.RetryMin)
	e.blocked(t)
	if got := onDisk(t, f).Leaf; serialHex(got) != strings.ToLower(b2.Serial) {
		t.Errorf("on disk %s, want the renewed %s", serialHex(got), b2.Serial)
	}
}

func TestSecretNeverPrints(t *testing.T) {
	t.Parallel()
	s := Secret("hunter2")
	b := Bundle{Name: "web", KeyPEM: "-----BEGIN PRIVATE KEY-----\nhunter2\n-----END PRIVATE KEY-----\n"}
	var logs strings.Builder
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "token", s, "bundle", b)
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "token", s, "bundle", b)
	out := logs.String() + fmt.Sprintf("%v %s %q %+v %#v %v", s, s, s, b, b, []Secret{s})
	if strings.Contains(out, "hunter2") {
		t.Errorf("a secret printed: %s", out)
	}
	if !strings.Contains(out, "REDACTED") {
		t.Errorf("no REDACTED in %s", out)
	}
}
