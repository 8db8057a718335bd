package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files under testdata/")

// TestInitConfigGolden: the sigil.yaml that `sigil init` writes is, byte
// for byte, the one in testdata/init/, for the default flags and for a
// config with every rendered section away from its default. The golden
// files were written before the template became an embedded file, so
// they hold its rendering to what it was.
func TestInitConfigGolden(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		cfg  func(dir string) *Config
	}{
		{"default", func(dir string) *Config {
			// As runInit builds it from the default flags.
			return &Config{Database: "sigil.db", HTTPS: HTTPSConfig{Addr: "127.0.0.1:8443", Names: []string{"localhost", "127.0.0.1"}},
				HTTP: HTTPConfig{Addr: "127.0.0.1:8080"}, dir: dir}
		}},
		{"custom", func(dir string) *Config {
			c := &Config{Database: "ca.db", HTTPS: HTTPSConfig{Addr: "0.0.0.0:443", Names: []string{"ca.example.net"}},
				HTTP: HTTPConfig{Addr: "0.0.0.0:80"}, ExternalURL: "http://ca.example.net", dir: dir}
			c.OCSP.Nonce, c.OCSP.SignWithIssuer = true, true
			c.CRL.Shards = 4
			c.ACME.Resolver = "10.0.0.53:53"
			c.ACME.Validation.RedirectHosts = []string{"gw.example.net"}
			c.Intermediate.RotateAt = "75%"
			c.Notify.WebhookURL, c.Notify.SecretFile = "https://hooks.example.net/sigil", "webhook.secret"
			c.Log.Level, c.Log.Format = "debug", "json"
			return c
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := c.cfg(dir)
			cfg.applyDefaults()
			path := filepath.Join(dir, "sigil.yaml")
			if err := WriteConfig(path, cfg); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "init", c.name+".yaml")
			if *updateGolden {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("init writes (%d bytes) differs from %s (%d bytes):\n%s", len(got), golden, len(want), got)
			}
		})
	}
}
