package main

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sigil-ca/sigil/ca"
)

// configProfile is a valid profile to build test documents around.
const configProfile = `
profiles:
  p:
    key_usage: [digital_signature]
    ext_key_usage: [server_auth]
    max_validity: 24h
`

func TestParseConfigStrict(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		doc  string
		want []string // substrings of the error
	}{
		{"unknown top-level key", "database: a.db\nbogus_key: 1\n", []string{"bogus_key"}},
		{"unknown nested key", "https:\n  adress: 127.0.0.1:1\n", []string{"adress"}},
		{"unknown store driver", "store:\n  driver: mysql\n", []string{"store.driver", "mysql"}},
		{"postgres without dsn", "store:\n  driver: postgres\n", []string{"store.dsn"}},
		{"dsn not a URL", "store:\n  driver: postgres\n  dsn: host=db user=sigil\n", []string{"store.dsn"}},
		{"password in the dsn", "store:\n  driver: postgres\n  dsn: postgres://sigil:hunter2@db/sigil\n", []string{"store.dsn", "password"}},
		{"password parameter in the dsn", "store:\n  driver: postgres\n  dsn: postgres://sigil@db/sigil?password=hunter2\n", []string{"store.dsn", "password"}},
		{"dsn without postgres", "store:\n  dsn: postgres://sigil@db/sigil\n", []string{"store.driver: postgres"}},
		{"store password in the config", "store:\n  driver: postgres\n  dsn: postgres://sigil@db/sigil\n  password: hunter2\n", []string{"password"}},
		{"unknown profile field", configProfile + "    colour: red\n", []string{"colour"}},
		{"unknown name policy field", configProfile + "    names:\n      dnss: {allow: [a.example]}\n", []string{"dnss"}},
		{"misspelled secret field", "passphrase: hunter2hunter2\n", []string{"passphrase"}},
		{"bad cert_validity", "https:\n  cert_validity: 7 days\n", []string{"7 days"}},
		{"bad max_validity", strings.Replace(configProfile, "24h", "ninety", 1), []string{"ninety"}},
		{"cert_validity below an hour", "https:\n  cert_validity: 30m\n", []string{"cert_validity"}},
		{"max_validity below a minute", strings.Replace(configProfile, "24h", "30s", 1), []string{"profiles.p", "max_validity"}},
		{"default above max", configProfile + "    default_validity: 48h\n", []string{"default_validity"}},
		{"negative default", configProfile + "    default_validity: -1h\n", []string{"default_validity"}},
		{"min_rsa_bits 1024", configProfile + "    min_rsa_bits: 1024\n", []string{"profiles.p", "min_rsa_bits", "1024"}},
		{"unknown ext_key_usage", strings.Replace(configProfile, "[server_auth]", "[server_auth, time_stamping]", 1), []string{"time_stamping"}},
		{"unknown key_usage", strings.Replace(configProfile, "[digital_signature]", "[digital_signature, cert_sign]", 1), []string{"cert_sign"}},
		{"empty key_usage", strings.Replace(configProfile, "[digital_signature]", "[]", 1), []string{"key_usage"}},
		{"unknown key type", configProfile + "    key_types: [ecdsa-p256, dsa]\n", []string{"dsa"}},
		{"bad CIDR", configProfile + "    names:\n      ip:\n        allow: [\"10.0.0.0/33\"]\n", []string{"10.0.0.0/33"}},
		{"bad IP", configProfile + "    names:\n      ip:\n        deny: [\"10.0.0.300\"]\n", []string{"10.0.0.300"}},
		{"bad DNS rule", configProfile + "    names:\n      dns:\n        allow: [\"exa mple.com\"]\n", []string{"exa mple.com"}},
		{"unknown forbid type", configProfile + "    names:\n      forbid: [phone]\n", []string{"phone"}},
		{"no profiles", "profiles: {}\n", []string{"profile"}},
		{"bad log level", "log:\n  level: loud\n", []string{"log.level", "loud"}},
		{"bad log format", "log:\n  format: xml\n", []string{"log.format"}},
		{"bad external_url", "external_url: ftp://ca.example\n", []string{"external_url"}},
		{"bad https.addr", "https:\n  addr: no-port\n", []string{"https.addr"}},
		{"small max_body_bytes", "limits:\n  max_body_bytes: 100\n", []string{"max_body_bytes"}},
		{"wrong type", "database: [a, b]\n", []string{"line 1"}},
		{"duplicate key", "database: a.db\ndatabase: b.db\n", []string{"database"}},
		{"second document", "database: a.db\n---\nbogus_key: 1\n", []string{"document"}},
		{"not yaml", "{{{", []string{"config"}},
		{"ocsp responder outlived", "ocsp:\n  validity: 48h\n", []string{"ocsp.responder_validity"}},
		{"ocsp validity too short", "ocsp:\n  validity: 1s\n", []string{"ocsp.validity"}},
		{"negative crl shards", "crl:\n  shards: -2\n", []string{"crl.shards"}},
		{"too many crl shards", "crl:\n  shards: 5000\n", []string{"crl.shards"}},
		{"short crl validity", "crl:\n  validity: 10m\n  refresh: 5m\n", []string{"crl.validity"}},
		{"crl refresh not below validity", "crl:\n  validity: 2h\n  refresh: 2h\n", []string{"crl.refresh"}},
		{"unknown crl key", "crl:\n  shard: 4\n", []string{"shard"}},
		{"unknown job", "jobs:\n  crl-publsh:\n    schedule: every 1h\n", []string{"jobs.crl-publsh: no such job"}},
		{"bad job schedule", "jobs:\n  crl-publish:\n    schedule: sometimes\n", []string{"jobs.crl-publish.schedule"}},
		{"ocsp refresh too rare", "jobs:\n  ocsp-refresh:\n    schedule: every 12h\n", []string{"jobs.ocsp-refresh: must stay enabled, every 3h0m0s"}},
		{"ocsp refresh off", "jobs:\n  ocsp-refresh:\n    enabled: false\n", []string{"jobs.ocsp-refresh"}},
		{"short root crl reload", "crl:\n  root_reload: 10ms\n", []string{"crl.root_reload"}},
		{"root crl warn beyond its validity", "crl:\n  root_warn: 9000h\n", []string{"crl.root_warn"}},
		{"bad kek-rotate schedule", "jobs:\n  kek-rotate:\n    schedule: monthly\n    enabled: true\n", []string{"jobs.kek-rotate.schedule"}},
		{"short tidy retention", "tidy:\n  retention: 1h\n", []string{"tidy.retention 1h0m0s must be at least 24h"}},
		{"unknown tidy key", "tidy:\n  retain: 24h\n", []string{"retain"}},
		{"webhook without secret", "notify:\n  webhook_url: https://hooks.example/x\n", []string{"notify.secret_file is required"}},
		{"relative webhook", "notify:\n  webhook_url: /hooks\n  secret_file: s\n", []string{"notify.webhook_url must be an absolute"}},
		{"webhook URL not repeated", "notify:\n  webhook_url: ftp://hooks.example/tok-123\n  secret_file: s\n", []string{"notify.webhook_url"}},
		{"zero threshold", "notify:\n  thresholds: [168h, 0s]\n", []string{"notify.thresholds: 0s is under a minute"}},
		{"repeated threshold", "notify:\n  thresholds: [24h, 24h]\n", []string{"notify.thresholds: 24h0m0s is listed twice"}},
		{"no thresholds", "notify:\n  thresholds: []\n", []string{"notify.thresholds: give 1 to 10"}},
		{"bad threshold", "notify:\n  thresholds: [30d]\n", []string{"30d"}},
		{"long webhook timeout", "notify:\n  timeout: 1h\n", []string{"notify.timeout"}},
		{"big batch", "notify:\n  batch_size: 5000\n", []string{"notify.batch_size"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.doc), "/etc/sigil")
			if err == nil {
				t.Fatalf("ParseConfig accepted:\n%s", tc.doc)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if !strings.HasPrefix(err.Error(), "config: ") {
				t.Errorf("error %q lacks the config: prefix", err)
			}
		})
	}
}

func TestParseConfigReportsEveryProblem(t *testing.T) {
	t.Parallel()
	_, err := ParseConfig([]byte("log:\n  level: loud\n  format: xml\nlimits:\n  max_body_bytes: 1\n"), "/etc/sigil")
	if err == nil {
		t.Fatal("accepted")
	}
	for _, w := range []string{"log.level", "log.format", "max_body_bytes"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("one Validate pass should report %s too: %v", w, err)
		}
	}
}

func TestParseConfigDefaults(t *testing.T) {
	t.Parallel()
	on := true
	reuse := ca.Duration(720 * time.Hour)
	caaAge := ca.Duration(8 * time.Hour)
	host, _ := os.Hostname() // node.name's default
	want := Config{
		Node:        NodeConfig{Name: host},
		Database:    "sigil.db",
		HTTPS:       HTTPSConfig{Addr: "127.0.0.1:8443", Names: []string{"localhost", "127.0.0.1"}, CertValidity: ca.Duration(7 * 24 * time.Hour)},
		HTTP:        HTTPConfig{Addr: "127.0.0.1:8080"},
		ExternalURL: "http://127.0.0.1:8080",
		Limits: LimitsConfig{MaxBodyBytes: 256 << 10, ReadHeaderTimeout: ca.Duration(10 * time.Second), ReadTimeout: ca.Duration(30 * time.Second),
			WriteTimeout: ca.Duration(time.Minute), IdleTimeout: ca.Duration(2 * time.Minute)},
		Log: LogConfig{Level: "info", Format: "text"},
		ACME: ACMEConfig{Enabled: &on, HTTPPort: 80, TLSPort: 443, AuthzReuse: &reuse, CAAMaxAge: &caaAge,
			ACMEEndpointConfig: ACMEEndpointConfig{Profile: "tls-server", Profiles: profileNames(ca.DefaultProfiles()), CAA: "auto"}},
		OCSP: OCSPConfig{Validity: ca.Duration(24 * time.Hour), ResponderValidity: ca.Duration(72 * time.Hour),
			NonceRate: 200, NonceRatePerSource: 5, NonceCPUShare: 0.1},
		CRL: CRLConfig{Validity: ca.Duration(24 * time.Hour), Refresh: ca.Duration(time.Hour),
			RootReload: ca.Duration(time.Minute), RootWarn: ca.Duration(30 * 24 * time.Hour)},
		Tidy: TidyConfig{Retention: ca.Duration(90 * 24 * time.Hour)},
		Notify: NotifyConfig{Thresholds: []ca.Duration{ca.Duration(720 * time.Hour), ca.Duration(168 * time.Hour), ca.Duration(24 * time.Hour)},
			Timeout: ca.Duration(10 * time.Second), BatchSize: 100},
		Profiles: ca.DefaultProfiles(),
		dir:      "/etc/sigil",
	}
	for _, tc := range []struct{ name, doc string }{
		{"empty", ""},
		{"comments only", "# nothing here\n\n# at all\n"},
		{"explicit empty document", "---\n"},
		{"null sections", "https:\nhttp:\nlimits:\nlog:\nprofiles:\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseConfig([]byte(tc.doc), "/etc/sigil")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, want) {
				t.Errorf("defaults:\n got %+v\nwant %+v", *got, want)
			}
			if p := got.DatabasePath(); p != "/etc/sigil/sigil.db" {
				t.Errorf("DatabasePath %s", p)
			}
		})
	}

	t.Run("external_url follows http.addr", func(t *testing.T) {
		got, err := ParseConfig([]byte("http:\n  addr: 10.1.2.3:8080\n"), "/etc/sigil")
		if err != nil {
			t.Fatal(err)
		}
		if got.ExternalURL != "http://10.1.2.3:8080" {
			t.Errorf("external_url %q", got.ExternalURL)
		}
	})

	t.Run("absolute database", func(t *testing.T) {
		got, err := ParseConfig([]byte("database: /var/lib/sigil/ca.db\n"), "/etc/sigil")
		if err != nil {
			t.Fatal(err)
		}
		if p := got.DatabasePath(); p != "/var/lib/sigil/ca.db" {
			t.Errorf("DatabasePath %s", p)
		}
	})

	t.Run("profiles given replace the defaults", func(t *testing.T) {
		got, err := ParseConfig([]byte(configProfile), "/etc/sigil")
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Profiles) != 1 || got.Profiles["p"].MaxValidity != ca.Duration(24*time.Hour) {
			t.Errorf("profiles %+v", got.Profiles)
		}
		if got.ACME.On() {
			t.Errorf("ACME is on without a tls-server profile or an acme.profile")
		}
		if _, err := ParseConfig([]byte(configProfile+"acme:\n  enabled: true\n"), "/etc/sigil"); err == nil {
			t.Errorf("acme.enabled without a usable profile was accepted")
		}
	})
}

// generatedConfig renders the sigil.yaml that `sigil init` writes.
func generatedConfig(t testing.TB, dir string) []byte {
	t.Helper()
	cfg := &Config{HTTPS: HTTPSConfig{Addr: "127.0.0.1:18443"}, HTTP: HTTPConfig{Addr: "127.0.0.1:18080"}, dir: dir}
	cfg.applyDefaults()
	path := filepath.Join(dir, "sigil.yaml")
	if err := WriteConfig(path, cfg); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestGeneratedConfigProfiles checks the profiles `sigil init` writes agree
// with the built-in defaults on what a certificate may be used for, and
// carry the documented name policy.
func TestGeneratedConfigProfiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg, err := ParseConfig(generatedConfig(t, dir), dir)
	if err != nil {
		t.Fatal(err)
	}
	defaults := ca.DefaultProfiles()
	if len(cfg.Profiles) != len(defaults) {
		t.Errorf("generated profiles %d, defaults %d", len(cfg.Profiles), len(defaults))
	}
	for name, d := range defaults {
		g, ok := cfg.Profiles[name]
		if !ok {
			t.Errorf("generated config lacks %s", name)
			continue
		}
		if !slices.Equal(g.KeyUsage, d.KeyUsage) || !slices.Equal(g.ExtKeyUsage, d.ExtKeyUsage) {
			t.Errorf("%s: generated key usage %v / %v, defaults %v / %v", name, g.KeyUsage, g.ExtKeyUsage, d.KeyUsage, d.ExtKeyUsage)
		}
		if g.MaxValidity != d.MaxValidity || g.MinRSABits != d.MinRSABits || !slices.Equal(g.KeyTypes, d.KeyTypes) {
			t.Errorf("%s: generated %+v, defaults %+v", name, g, d)
		}
		if slices.Contains(g.ExtKeyUsage, "client_auth") && !slices.Contains(g.ExtKeyUsage, "server_auth") && slices.Contains(g.KeyUsage, "key_encipherment") {
			t.Errorf("%s: a client-only profile must not ask for key_encipherment (RSA leaves would fail the lint gate)", name)
		}
	}
	if ip := cfg.Profiles["tls-server"].Names.IP.Allow; !slices.Contains(ip, "10.0.0.0/8") || slices.Contains(ip, "0.0.0.0/0") {
		t.Errorf("tls-server ip allow list %v", ip)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add(generatedConfig(f, f.TempDir()))
	f.Add([]byte(""))
	f.Add([]byte(configProfile))
	f.Add([]byte(configProfile + "    default_validity: 1h\n    key_types: [rsa]\n    min_rsa_bits: 3072\n" +
		"    names:\n      dns: {allow: [example.com], deny: [bad.example.com]}\n      ip: {allow: [10.0.0.0/8, \"::1\"]}\n" +
		"      email: {allow: [example.com]}\n      uri: {allow: [\"spiffe://example.org/\"]}\n" +
		"      allow_wildcards: true\n      forbid: [email]\n      max_names: 3\n"))
	f.Add([]byte("https:\n  addr: \"[::1]:8443\"\n  names: [ca.example, \"::1\"]\n  cert_validity: 2h\nlog: {level: debug, format: json}\n"))
	f.Add([]byte("database: a.db\n---\nbogus: 1\n"))
	f.Add([]byte("profiles: &p {a: *p}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig(data, "/fuzz")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "config: ") {
				t.Fatalf("error without the config: prefix: %v", err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("a parsed config fails Validate: %v", err)
		}
		if cfg.Database == "" || cfg.HTTPS.Addr == "" || cfg.HTTP.Addr == "" || cfg.ExternalURL == "" || len(cfg.Profiles) == 0 {
			t.Fatalf("a parsed config lacks defaults: %+v", cfg)
		}
		// What was accepted can be written out and read back as itself.
		out, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		again, err := ParseConfig(out, "/fuzz")
		if err != nil {
			t.Fatalf("a parsed config does not re-parse: %v\n%s", err, out)
		}
		out2, err := yaml.Marshal(again)
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != string(out2) {
			t.Fatalf("config changed on a round trip:\n%s\n---\n%s", out, out2)
		}
	})
}

func TestParseConfigACMERateLimits(t *testing.T) {
	t.Parallel()
	got, err := ParseConfig([]byte("acme:\n  rate_limits:\n    orders_per_account: 10\n    accounts_per_ip: -1\n"), "/etc/sigil")
	if err != nil {
		t.Fatal(err)
	}
	if rl := got.ACME.RateLimits; rl.OrdersPerAccount != 10 || rl.AccountsPerIP != -1 || rl.OrdersPerDomain != 0 {
		t.Errorf("rate limits %+v", rl)
	}
	if _, err := ParseConfig([]byte("acme:\n  rate_limits:\n    orders_per_domain: -2\n"), "/etc/sigil"); err == nil || !strings.Contains(err.Error(), "orders_per_domain") {
		t.Errorf("orders_per_domain -2 accepted or unclear: %v", err)
	}
	// orders_per_domain is the former name of certificates_per_domain.
	got, err = ParseConfig([]byte("acme:\n  rate_limits:\n    orders_per_domain: 7\n    orders_per_ip: 20\n"), "/etc/sigil")
	if err != nil {
		t.Fatal(err)
	}
	if rl := got.ACME.RateLimits; rl.CertificatesPerDomain != 7 || rl.OrdersPerIP != 20 {
		t.Errorf("rate limits %+v, want certificates_per_domain 7 and orders_per_ip 20", rl)
	}
	if _, err := ParseConfig([]byte("acme:\n  rate_limits:\n    orders_per_domain: 7\n    certificates_per_domain: 8\n"), "/etc/sigil"); err == nil || !strings.Contains(err.Error(), "former name") {
		t.Errorf("both names of the domain limit accepted or unclear: %v", err)
	}
	if _, err := ParseConfig([]byte("acme:\n  rate_limits:\n    orders_per_ip: -3\n"), "/etc/sigil"); err == nil || !strings.Contains(err.Error(), "orders_per_ip") {
		t.Errorf("orders_per_ip -3 accepted or unclear: %v", err)
	}
}

func TestParseConfigACMEValidation(t *testing.T) {
	t.Parallel()
	got, err := ParseConfig([]byte("acme:\n  caa_max_age: 0s\n  validation:\n    redirect_hosts: [cdn.example.com, \"*.example.net\", 192.0.2.1]\n    allow_link_local: true\n"), "/etc/sigil")
	if err != nil {
		t.Fatal(err)
	}
	if v := got.ACME.Validation; len(v.RedirectHosts) != 3 || !v.AllowLinkLocal || *got.ACME.CAAMaxAge != 0 {
		t.Errorf("validation %+v, caa_max_age %v", v, *got.ACME.CAAMaxAge)
	}
	for doc, want := range map[string]string{
		"acme:\n  caa_max_age: 9h\n":                                      "acme.caa_max_age",
		"acme:\n  caa_max_age: -1s\n":                                     "acme.caa_max_age",
		"acme:\n  validation:\n    redirect_hosts: [\"http://x.test\"]\n": "acme.validation.redirect_hosts",
		"acme:\n  validation:\n    redirect: [x.test]\n":                  "redirect",
	} {
		if _, err := ParseConfig([]byte(doc), "/etc/sigil"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error naming %s", doc, err, want)
		}
	}
}

func TestParseConfigACMEEndpoints(t *testing.T) {
	t.Parallel()
	doc := `external_url: http://ca.example.internal:8080
acme:
  caa: "on"
  authz_reuse: 0s
  endpoints:
    partners:
      require_eab: true
      names:
        dns:
          allow: [partners.example.internal]
    clients:
      profile: tls-client
      caa: "off"
`
	got, err := ParseConfig([]byte(doc), "/etc/sigil")
	if err != nil {
		t.Fatal(err)
	}
	p, c := got.ACME.Endpoints["partners"], got.ACME.Endpoints["clients"]
	if p.Profile != "tls-server" || !p.RequireEAB || p.CAA != "on" || p.Names == nil || len(p.Profiles) != 1 {
		t.Errorf("partners endpoint %+v: want the default profile, EAB, the default caa mode and its names", p)
	}
	if c.Profile != "tls-client" || c.CAA != "off" || c.RequireEAB {
		t.Errorf("clients endpoint %+v", c)
	}
	if *got.ACME.AuthzReuse != 0 || len(got.ACME.CAAIdentities) != 1 || got.ACME.CAAIdentities[0] != "ca.example.internal" {
		t.Errorf("authz_reuse %v, caa_identities %v", *got.ACME.AuthzReuse, got.ACME.CAAIdentities)
	}

	for name, tc := range map[string]struct{ doc, want string }{
		"reserved name":   {"acme:\n  endpoints:\n    acct: {}\n", "not a usable endpoint name"},
		"path in name":    {"acme:\n  endpoints:\n    a/b: {}\n", "not a usable endpoint name"},
		"unknown profile": {"acme:\n  endpoints:\n    x:\n      profile: nope\n", "acme.endpoints.x.profile"},
		"offered unknown": {"acme:\n  endpoints:\n    x:\n      profiles: [nope]\n", "acme.endpoints.x.profiles"},
		"caa mode":        {"acme:\n  caa: sometimes\n", "acme.caa"},
		"negative reuse":  {"acme:\n  authz_reuse: -1h\n", "authz_reuse"},
		"bad identity":    {"acme:\n  caa_identities: [\"not a name\"]\n", "caa_identities"},
		"bad names":       {"acme:\n  endpoints:\n    x:\n      names:\n        ip:\n          allow: [not-a-cidr]\n", "acme.endpoints.x.names"},
	} {
		if _, err := ParseConfig([]byte(tc.doc), "/etc/sigil"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one naming %q", name, err, tc.want)
		}
	}
}
