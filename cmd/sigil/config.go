package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"text/template"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sigil-ca/sigil/acme"
	"github.com/sigil-ca/sigil/ca"
)

// AuditConfig configures the audit chain.
type AuditConfig struct {
	// Witness receives every signed checkpoint and tree head, so that a
	// database cut back together with its newest checkpoints is still
	// caught (sigil audit verify --witness DIR).
	Witness WitnessConfig `yaml:"witness"`
}

// WitnessConfig names where checkpoints are published besides the
// database: a directory (best on another disk or host) and/or a URL that
// each is POSTed to as JSON. Both empty: no witness.
type WitnessConfig struct {
	Dir string `yaml:"dir"`
	URL string `yaml:"url"`
}

// WitnessDir is the witness directory, relative paths resolved against the
// config file's directory; "" if none.
func (c *Config) WitnessDir() string {
	if d := c.Audit.Witness.Dir; d != "" && !filepath.IsAbs(d) {
		return filepath.Join(c.dir, d)
	}
	return c.Audit.Witness.Dir
}

// Config is sigil.yaml. It holds no secrets.
type Config struct {
	Database     string                `yaml:"database"`
	HTTPS        HTTPSConfig           `yaml:"https"`
	HTTP         HTTPConfig            `yaml:"http"`
	ExternalURL  string                `yaml:"external_url"`
	Limits       LimitsConfig          `yaml:"limits"`
	Log          LogConfig             `yaml:"log"`
	ACME         ACMEConfig            `yaml:"acme"`
	OCSP         OCSPConfig            `yaml:"ocsp"`
	CRL          CRLConfig             `yaml:"crl"`
	Jobs         map[string]JobConfig  `yaml:"jobs"`
	Tidy         TidyConfig            `yaml:"tidy"`
	Intermediate IntermediateConfig    `yaml:"intermediate"`
	Notify       NotifyConfig          `yaml:"notify"`
	Audit        AuditConfig           `yaml:"audit"`
	Profiles     map[string]ca.Profile `yaml:"profiles"`

	dir    string // directory of the config file; relative paths resolve against it
	path   string // the file it was read from, if any
	sha256 string // hex SHA-256 of that file, recorded in the audit log
	// allowBrokenAudit lets serve start on an audit chain that fails its
	// start-up check (--allow-broken-audit, for forensics only).
	allowBrokenAudit bool
}

// HTTPSConfig is the TLS listener.
type HTTPSConfig struct {
	Addr         string      `yaml:"addr"`
	Names        []string    `yaml:"names"`
	CertValidity ca.Duration `yaml:"cert_validity"`
}

// HTTPConfig is the plain listener (OCSP, CRL, issuer certificates).
type HTTPConfig struct {
	Addr string `yaml:"addr"`
}

// LimitsConfig bounds requests.
type LimitsConfig struct {
	MaxBodyBytes      int64       `yaml:"max_body_bytes"`
	ReadHeaderTimeout ca.Duration `yaml:"read_header_timeout"`
	ReadTimeout       ca.Duration `yaml:"read_timeout"`
	WriteTimeout      ca.Duration `yaml:"write_timeout"`
	IdleTimeout       ca.Duration `yaml:"idle_timeout"`
}

// ACMEConfig is ACME: the default endpoint at /acme/directory (its
// settings inline) and named ones at /acme/{name}/directory. Validation
// settings and rate limits are shared by all endpoints.
type ACMEConfig struct {
	Enabled            *bool `yaml:"enabled"`
	ACMEEndpointConfig `yaml:",inline"`
	Resolver           string `yaml:"resolver"`
	HTTPPort           int    `yaml:"http_port"`
	TLSPort            int    `yaml:"tls_port"`
	// AuthzReuse is how long a proven authorization is reused (default
	// 720h; 0s: never).
	AuthzReuse *ca.Duration `yaml:"authz_reuse"`
	// CAAIdentities are the issuer domain names CAA records must name for
	// this CA (RFC 8659 issue/issuewild values).
	CAAIdentities []string `yaml:"caa_identities"`
	// CAAMaxAge is how old an authorization's last CAA check may be at
	// issuance before finalize checks again (default and at most 8h; 0s:
	// at every finalize).
	CAAMaxAge *ca.Duration `yaml:"caa_max_age"`
	// Validation limits where challenge validation may connect.
	Validation ACMEValidationConfig `yaml:"validation"`
	// RateLimits are per hour; 0 keeps the built-in default, -1 disables.
	RateLimits ACMERateLimits                `yaml:"rate_limits"`
	Endpoints  map[string]ACMEEndpointConfig `yaml:"endpoints"`
}

// ACMEEndpointConfig is what one ACME endpoint binds: a profile, the
// profiles it offers, an optional narrower name policy, and whether it
// requires external account binding and checks CAA.
type ACMEEndpointConfig struct {
	Profile string `yaml:"profile"`
	// Profiles a newOrder may name (the ACME profiles extension); default:
	// every configured profile on the default endpoint, only Profile on a
	// named one.
	Profiles   []string       `yaml:"profiles"`
	RequireEAB bool           `yaml:"require_eab"`
	CAA        string         `yaml:"caa"` // auto (default), on or off
	Names      *ca.NamePolicy `yaml:"names"`
}

// ACMEValidationConfig limits where challenge validation may connect: it
// runs inside the operator's network.
type ACMEValidationConfig struct {
	// RedirectHosts are hosts an http-01 redirect may lead to besides the
	// identifier's own: names, "*.domain" or IP addresses.
	RedirectHosts []string `yaml:"redirect_hosts"`
	// AllowLinkLocal lets validation connect to link-local and cloud
	// metadata addresses (169.254.0.0/16, fe80::/10, fd00:ec2::254).
	AllowLinkLocal bool `yaml:"allow_link_local"`
}

// ACMERateLimits bound how fast one client may use ACME.
type ACMERateLimits struct {
	AccountsPerIP         int `yaml:"accounts_per_ip"`
	OrdersPerAccount      int `yaml:"orders_per_account"`
	OrdersPerIP           int `yaml:"orders_per_ip"`
	CertificatesPerDomain int `yaml:"certificates_per_domain"`
	// OrdersPerDomain is the former name of CertificatesPerDomain, read
	// so that existing files keep working.
	OrdersPerDomain int `yaml:"orders_per_domain"`
}

// On reports whether the ACME endpoint is served (default yes).
func (a ACMEConfig) On() bool { return a.Enabled == nil || *a.Enabled }

// OCSPConfig is the OCSP responder on the plain listener.
type OCSPConfig struct {
	// Validity is nextUpdate - thisUpdate of responses (default 24h).
	Validity ca.Duration `yaml:"validity"`
	// ResponderValidity is the lifetime of the delegated responder
	// certificate (default 72h), at least twice Validity.
	ResponderValidity ca.Duration `yaml:"responder_validity"`
	// SignWithIssuer signs responses with the intermediate's key.
	SignWithIssuer bool `yaml:"sign_with_issuer"`
	// Nonce echoes the nonce of POST requests in a response signed for
	// each (default off: RFC 5019 responders serve pre-signed responses).
	Nonce bool `yaml:"nonce"`
	// NonceRate bounds nonce responses signed live, per second (default
	// 200); NonceRatePerSource bounds them per client IPv4 address or IPv6
	// /64 (default 5); NonceCPUShare bounds their signing time as a share
	// of one core (default 0.1). Past any, the pre-signed response is served
	// without the nonce.
	NonceRate          float64 `yaml:"nonce_rate"`
	NonceRatePerSource float64 `yaml:"nonce_rate_per_source"`
	NonceCPUShare      float64 `yaml:"nonce_cpu_share"`
}

// LogConfig sets logging.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

// applyDefaults fills every unset field; defaults live only here.
func (c *Config) applyDefaults() {
	if c.Database == "" {
		c.Database = "sigil.db"
	}
	if c.HTTPS.Addr == "" {
		c.HTTPS.Addr = "127.0.0.1:8443"
	}
	if len(c.HTTPS.Names) == 0 {
		c.HTTPS.Names = []string{"localhost", "127.0.0.1"}
	}
	if c.HTTPS.CertValidity == 0 {
		c.HTTPS.CertValidity = ca.Duration(7 * 24 * time.Hour)
	}
	if c.HTTP.Addr == "" {
		c.HTTP.Addr = "127.0.0.1:8080"
	}
	if c.ExternalURL == "" {
		c.ExternalURL = "http://" + c.HTTP.Addr
	}
	if c.Limits.MaxBodyBytes == 0 {
		c.Limits.MaxBodyBytes = 256 << 10
	}
	for _, d := range []struct {
		v   *ca.Duration
		def time.Duration
	}{
		{&c.Limits.ReadHeaderTimeout, 10 * time.Second},
		{&c.Limits.ReadTimeout, 30 * time.Second},
		{&c.Limits.WriteTimeout, 60 * time.Second},
		{&c.Limits.IdleTimeout, 120 * time.Second},
	} {
		if *d.v == 0 {
			*d.v = ca.Duration(d.def)
		}
	}
	if c.OCSP.Validity == 0 {
		c.OCSP.Validity = ca.Duration(24 * time.Hour)
	}
	if c.OCSP.ResponderValidity == 0 {
		c.OCSP.ResponderValidity = ca.Duration(72 * time.Hour)
	}
	if c.OCSP.NonceRate == 0 {
		c.OCSP.NonceRate = 200
	}
	if c.OCSP.NonceRatePerSource == 0 {
		c.OCSP.NonceRatePerSource = 5
	}
	if c.OCSP.NonceCPUShare == 0 {
		c.OCSP.NonceCPUShare = 0.1
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.ACME.HTTPPort == 0 {
		c.ACME.HTTPPort = 80
	}
	if c.ACME.TLSPort == 0 {
		c.ACME.TLSPort = 443
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	c.CRL.applyDefaults()
	c.Tidy.applyDefaults()
	c.Notify.applyDefaults()
	if c.Profiles == nil {
		c.Profiles = ca.DefaultProfiles()
	}
	// ACME issues with tls-server unless told otherwise; without that
	// profile and without an explicit choice, ACME stays off.
	if _, ok := c.Profiles["tls-server"]; ok && c.ACME.Profile == "" {
		c.ACME.Profile = "tls-server"
	}
	if c.ACME.Enabled == nil {
		on := c.ACME.Profile != ""
		c.ACME.Enabled = &on
	}
	if c.ACME.AuthzReuse == nil {
		d := ca.Duration(720 * time.Hour)
		c.ACME.AuthzReuse = &d
	}
	if c.ACME.CAAMaxAge == nil {
		d := ca.Duration(acme.MaxCAAAge)
		c.ACME.CAAMaxAge = &d
	}
	if rl := &c.ACME.RateLimits; rl.CertificatesPerDomain == 0 {
		rl.CertificatesPerDomain = rl.OrdersPerDomain
	}
	if len(c.ACME.CAAIdentities) == 0 {
		// The CA's own host name is what an operator would publish in CAA.
		if u, err := url.Parse(c.ExternalURL); err == nil && ca.ValidDNSName(u.Hostname()) == nil {
			c.ACME.CAAIdentities = []string{u.Hostname()}
		}
	}
	if c.ACME.CAA == "" {
		c.ACME.CAA = "auto"
	}
	if c.ACME.Profiles == nil {
		c.ACME.Profiles = profileNames(c.Profiles)
	}
	for name, e := range c.ACME.Endpoints {
		if e.Profile == "" {
			e.Profile = c.ACME.Profile
		}
		if e.Profiles == nil {
			e.Profiles = []string{e.Profile}
		}
		if e.CAA == "" {
			e.CAA = c.ACME.CAA
		}
		c.ACME.Endpoints[name] = e
	}
}

// endpointName is the syntax of a named ACME endpoint: one URL path segment.
var endpointName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// reservedEndpointNames are path segments of the default ACME endpoint,
// which a named endpoint at /acme/{name}/ would shadow.
var reservedEndpointNames = []string{"directory", "new-nonce", "new-account", "new-order", "acct", "order", "authz",
	"chall", "cert", "key-change", "revoke-cert", "renewal-info"}

// validateACMEEndpoint checks one endpoint; field prefixes errors.
func (c *Config) validateACMEEndpoint(field string, e ACMEEndpointConfig) []error {
	var errs []error
	if _, ok := c.Profiles[e.Profile]; !ok {
		errs = append(errs, fmt.Errorf("%s.profile %q is not a configured profile", field, e.Profile))
	}
	for _, p := range e.Profiles {
		if _, ok := c.Profiles[p]; !ok {
			errs = append(errs, fmt.Errorf("%s.profiles: %q is not a configured profile", field, p))
		}
	}
	switch e.CAA {
	case "auto", "on", "off":
	default:
		errs = append(errs, fmt.Errorf("%s.caa %q must be auto, on or off", field, e.CAA))
	}
	if e.Names != nil {
		if err := e.Names.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s.names: %w", field, err))
		}
	}
	return errs
}

// Validate checks the whole configuration in one pass.
func (c *Config) Validate() error {
	var errs []error
	if c.OCSP.NonceRate < 0 || c.OCSP.NonceRatePerSource < 0 || c.OCSP.NonceCPUShare < 0 || c.OCSP.NonceCPUShare > 1 {
		errs = append(errs, fmt.Errorf("ocsp.nonce_rate, nonce_rate_per_source must be positive and nonce_cpu_share in (0, 1]"))
	}
	if u := c.Audit.Witness.URL; u != "" {
		if p, err := url.Parse(u); err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
			errs = append(errs, fmt.Errorf("audit.witness.url %q is not an http(s) URL", u))
		}
	}
	if c.OCSP.Validity < ca.Duration(time.Minute) {
		errs = append(errs, fmt.Errorf("ocsp.validity %s is under a minute", c.OCSP.Validity))
	}
	if !c.OCSP.SignWithIssuer && c.OCSP.ResponderValidity < 2*c.OCSP.Validity {
		errs = append(errs, fmt.Errorf("ocsp.responder_validity %s must be at least twice ocsp.validity %s", c.OCSP.ResponderValidity, c.OCSP.Validity))
	}
	for _, a := range []struct{ name, addr string }{{"https.addr", c.HTTPS.Addr}, {"http.addr", c.HTTP.Addr}} {
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a.name, err))
		}
	}
	if u, err := url.Parse(c.ExternalURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("external_url %q must be an http(s) URL", c.ExternalURL))
	}
	for _, n := range c.HTTPS.Names {
		if net.ParseIP(n) == nil && ca.ValidDNSName(n) != nil {
			errs = append(errs, fmt.Errorf("https.names: %q is neither an IP address nor a DNS name", n))
		}
	}
	if time.Duration(c.HTTPS.CertValidity) < time.Hour {
		errs = append(errs, errors.New("https.cert_validity must be at least 1h"))
	}
	for name, d := range map[string]ca.Duration{"read_header_timeout": c.Limits.ReadHeaderTimeout,
		"read_timeout": c.Limits.ReadTimeout, "write_timeout": c.Limits.WriteTimeout, "idle_timeout": c.Limits.IdleTimeout} {
		if d < ca.Duration(100*time.Millisecond) || d > ca.Duration(time.Hour) {
			errs = append(errs, fmt.Errorf("limits.%s %s must be between 100ms and 1h", name, d))
		}
	}
	if c.Limits.MaxBodyBytes < 4096 {
		errs = append(errs, errors.New("limits.max_body_bytes must be at least 4096"))
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level %q must be debug, info, warn or error", c.Log.Level))
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log.format %q must be text or json", c.Log.Format))
	}
	if c.ACME.On() {
		if _, ok := c.Profiles[c.ACME.Profile]; !ok {
			errs = append(errs, fmt.Errorf("acme.profile %q is not a configured profile (set acme.profile, or acme.enabled: false)", c.ACME.Profile))
		} else {
			errs = append(errs, c.validateACMEEndpoint("acme", c.ACME.ACMEEndpointConfig)...)
		}
		for name, e := range c.ACME.Endpoints {
			if !endpointName.MatchString(name) || slices.Contains(reservedEndpointNames, name) {
				errs = append(errs, fmt.Errorf("acme.endpoints: %q is not a usable endpoint name (lower-case letters, digits and dashes, not %s)",
					name, strings.Join(reservedEndpointNames, ", ")))
				continue
			}
			errs = append(errs, c.validateACMEEndpoint("acme.endpoints."+name, e)...)
		}
		if *c.ACME.AuthzReuse < 0 {
			errs = append(errs, errors.New("acme.authz_reuse must not be negative (0s turns reuse off)"))
		}
		for _, id := range c.ACME.CAAIdentities {
			if err := ca.ValidDNSName(id); err != nil {
				errs = append(errs, fmt.Errorf("acme.caa_identities: %q: %w", id, err))
			}
		}
		if c.ACME.Resolver != "" {
			if _, _, err := net.SplitHostPort(c.ACME.Resolver); err != nil {
				errs = append(errs, fmt.Errorf("acme.resolver: %w", err))
			}
		}
		if d := time.Duration(*c.ACME.CAAMaxAge); d < 0 || d > acme.MaxCAAAge {
			errs = append(errs, fmt.Errorf("acme.caa_max_age %s: use 0s (check at every finalize) up to %s", d, acme.MaxCAAAge))
		}
		if _, err := acme.NewValidator(acme.ValidationConfig{RedirectHosts: c.ACME.Validation.RedirectHosts}); err != nil {
			errs = append(errs, fmt.Errorf("acme.validation.redirect_hosts: %w", err))
		}
		rl := c.ACME.RateLimits
		if rl.OrdersPerDomain != 0 && rl.OrdersPerDomain != rl.CertificatesPerDomain {
			errs = append(errs, errors.New("acme.rate_limits: orders_per_domain is the former name of certificates_per_domain: set only certificates_per_domain"))
		}
		for name, v := range map[string]int{"accounts_per_ip": rl.AccountsPerIP, "orders_per_account": rl.OrdersPerAccount,
			"orders_per_ip": rl.OrdersPerIP, "certificates_per_domain": rl.CertificatesPerDomain, "orders_per_domain": rl.OrdersPerDomain} {
			if v < -1 {
				errs = append(errs, fmt.Errorf("acme.rate_limits.%s %d: use a count per hour, 0 for the default or -1 for none", name, v))
			}
		}
		for name, port := range map[string]int{"acme.http_port": c.ACME.HTTPPort, "acme.tls_port": c.ACME.TLSPort} {
			if port < 1 || port > 65535 {
				errs = append(errs, fmt.Errorf("%s %d is not a TCP port", name, port))
			}
		}
	}
	errs = append(errs, c.CRL.validate()...)
	errs = append(errs, c.validateJobs()...)
	if err := c.Intermediate.validate(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.Tidy.validate()...)
	errs = append(errs, c.Notify.validate()...)
	if len(c.Profiles) == 0 {
		errs = append(errs, errors.New("profiles: at least one profile is required"))
	}
	for name, p := range c.Profiles {
		if err := p.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("profiles.%s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// DatabasePath resolves the database against the config directory.
func (c *Config) DatabasePath() string {
	if filepath.IsAbs(c.Database) {
		return c.Database
	}
	return filepath.Join(c.dir, c.Database)
}

// ParseConfig decodes strictly (unknown keys fail), applies defaults and validates.
func ParseConfig(data []byte, dir string) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config: %w", err)
	}
	// A second document would be silently ignored: refuse it instead.
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("config: more than one YAML document; sigil.yaml holds exactly one")
	}
	c.dir = dir
	c.applyDefaults()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return &c, nil
}

// Overlay decodes a sigil.yaml fragment strictly onto c, so the keys it
// sets replace c's and the rest stay, then fills defaults and validates
// again. sigil dev uses it to let --config turn on what needs
// configuration (EAB, named endpoints, a name policy).
func (c *Config) Overlay(fragment []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(fragment))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config overlay: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("config overlay: more than one YAML document")
	}
	c.applyDefaults()
	if err := c.Validate(); err != nil {
		return fmt.Errorf("config overlay: %w", err)
	}
	return nil
}

// LoadConfig reads path.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	abs, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := ParseConfig(data, abs)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	c.path, c.sha256 = filepath.Join(abs, filepath.Base(path)), hex.EncodeToString(sum[:])
	return c, nil
}

var configTemplate = template.Must(template.New("sigil.yaml").Funcs(template.FuncMap{"join": strings.Join}).Parse(`# Sigil configuration, written by "sigil init". Secrets never go in this file:
# the passphrase comes from --passphrase-file, SIGIL_PASSPHRASE or a prompt.
# Durations use Go syntax: "90m", "720h".

# SQLite database file; a relative path is relative to this file.
database: {{.Database}}

https:
  # Address of the HTTPS listener (/v1 API, /roots.pem, /healthz, /metrics).
  addr: {{.HTTPS.Addr}}
  # Names (DNS names or IP addresses) on the listener's own certificate,
  # which the server issues from its intermediate and renews at 2/3 of its life.
  names: [{{range $i, $n := .HTTPS.Names}}{{if $i}}, {{end}}"{{$n}}"{{end}}]
  # Lifetime of that serving certificate.
  cert_validity: {{.HTTPS.CertValidity}}

http:
  # Address of the plain-HTTP listener (/ocsp, /crl/, /issuer/, /roots.pem).
  addr: {{.HTTP.Addr}}

# Base URL at which relying parties reach the plain-HTTP listener. Issued
# certificates carry OCSP, issuer and CRL URLs built from it.
external_url: {{.ExternalURL}}

limits:
  # Largest request body the API accepts, in bytes.
  max_body_bytes: {{.Limits.MaxBodyBytes}}
  # Time a client may take to send its request headers (slow-loris guard).
  read_header_timeout: {{.Limits.ReadHeaderTimeout}}
  # Time a client may take to send a whole request.
  read_timeout: {{.Limits.ReadTimeout}}
  # Time the server may take to write a response.
  write_timeout: {{.Limits.WriteTimeout}}
  # How long an idle keep-alive connection stays open.
  idle_timeout: {{.Limits.IdleTimeout}}

acme:
  # Serve ACME (RFC 8555) at /acme/directory on the HTTPS listener.
  enabled: {{.ACME.On}}
  # Issuance profile ACME orders use when they name none.
  profile: {{.ACME.Profile}}
  # Profiles a newOrder may name (the ACME "profiles" extension).
  profiles: [{{join .ACME.Profiles ", "}}]
  # Require an external account binding (sigil acme eab create) for new accounts.
  require_eab: {{.ACME.RequireEAB}}
  # CAA (RFC 8659) checking: auto (names under a public suffix), on, or off.
  caa: {{.ACME.CAA}}
  # Issuer domain names that CAA records must name to allow this CA.
  caa_identities: [{{join .ACME.CAAIdentities ", "}}]
  # How long a proven authorization is reused for new orders (0s: never).
  authz_reuse: {{.ACME.AuthzReuse}}
  # How old the last CAA check of an authorization may be when a certificate
  # is issued from it; older ones are checked again at finalize (at most 8h,
  # the CA/Browser Forum's bound; 0s: check at every finalize).
  caa_max_age: {{.ACME.CAAMaxAge}}
  # DNS server ("host:port") for challenge validation; empty: the system resolver.
  resolver: "{{.ACME.Resolver}}"
  # Port http-01 validation connects to.
  http_port: {{.ACME.HTTPPort}}
  # Port tls-alpn-01 validation connects to.
  tls_port: {{.ACME.TLSPort}}
  # Validation runs inside your network. An http-01 redirect is followed
  # only to the identifier's own host, and never to a link-local or cloud
  # metadata address (169.254.0.0/16, fe80::/10, fd00:ec2::254), checked on
  # the address actually connected to.
  validation:
    # Other hosts a redirect may lead to: names, "*.domain" (names under
    # it) or IP addresses. What they answer is never shown to the client.
    redirect_hosts: [{{join .ACME.Validation.RedirectHosts ", "}}]
    # Allow connecting to link-local and metadata addresses.
    allow_link_local: {{.ACME.Validation.AllowLinkLocal}}
  # Per-hour limits (0: built-in default of 50 / 3000 / 3000 / 3000; -1: no
  # limit). Orders count per account and per client; a registered domain's
  # budget counts only issued certificates, so accounts that proved nothing
  # cannot spend it.
  rate_limits:
    # New accounts from one client IP address (IPv6: per /64).
    accounts_per_ip: {{.ACME.RateLimits.AccountsPerIP}}
    # New orders by one account.
    orders_per_account: {{.ACME.RateLimits.OrdersPerAccount}}
    # New orders from one client IP address (IPv6: per /64), any account.
    orders_per_ip: {{.ACME.RateLimits.OrdersPerIP}}
    # Certificates issued naming one registered domain (eTLD+1); formerly
    # orders_per_domain.
    certificates_per_domain: {{.ACME.RateLimits.CertificatesPerDomain}}
  # Named endpoints at /acme/NAME/directory, each with its own profile,
  # offered profiles, require_eab, caa and an optional narrower name policy
  # ("names", as in a profile). For example:
  # endpoints:
  #   partners:
  #     profile: tls-server
  #     require_eab: true
  #     caa: off
  #     names:
  #       dns:
  #         allow: [partners.example.internal]

ocsp:
  # Validity of OCSP responses (nextUpdate - thisUpdate); responses are
  # pre-signed and re-signed before half of it has passed, and at once
  # after a revocation.
  validity: {{.OCSP.Validity}}
  # Lifetime of the delegated OCSP responder certificate (EKU OCSPSigning,
  # id-pkix-ocsp-nocheck); rotated at half-life. At least twice validity.
  responder_validity: {{.OCSP.ResponderValidity}}
  # Sign responses with the intermediate's own key instead of a delegated
  # responder certificate.
  sign_with_issuer: {{.OCSP.SignWithIssuer}}
  # Echo the nonce of a POST request (RFC 6960 4.4.1) in a response signed
  # for that request alone, never cached. Off, nonces are ignored and every
  # answer is pre-signed (RFC 5019); GETs are answered from the cache either way.
  nonce: {{.OCSP.Nonce}}
  # Live nonce signing is anyone's to ask for, so it is budgeted; past any
  # budget the pre-signed response is served without the nonce (RFC 8954
  # lets the client decide). Nonce responses signed a second, in all:
  nonce_rate: {{.OCSP.NonceRate}}
  # ... and a second per client (IPv4 address or IPv6 /64; burst twice that):
  nonce_rate_per_source: {{.OCSP.NonceRatePerSource}}
  # ... and the share of one core spent signing them (binds first for RSA):
  nonce_cpu_share: {{.OCSP.NonceCPUShare}}

crl:
  # Partitions of each issuer's CRL (0 or 1: one CRL per issuer). With N > 1
  # every new certificate is assigned a shard from its serial, its CRL
  # distribution point is /crl/ISSUER/SHARD.crl, and that CRL carries a
  # matching issuing distribution point, so relying parties fetch a small file.
  shards: {{.CRL.Shards}}
  # nextUpdate - thisUpdate of every CRL.
  validity: {{.CRL.Validity}}
  # How often every CRL is regenerated (a revocation also regenerates its CRL
  # within seconds); shorter than validity.
  refresh: {{.CRL.Refresh}}
  # The root's CRL is signed offline (by sigil init, then by sigil ca root-crl
  # before its nextUpdate): how often the server re-reads it from the database.
  root_reload: {{.CRL.RootReload}}
  # How long before the root CRL's nextUpdate the server warns that it must
  # be re-signed (a log line and the sigil_crl_offline_due metric).
  root_warn: {{.CRL.RootWarn}}

# Scheduled jobs (sigil jobs list). Each runs alone, never overlapping
# itself; a run that fell due while the server was down runs at start.
# schedule: "every 1h" or a five-field cron expression in UTC.
# jobs:
#   crl-publish:           # regenerates every CRL; default: every crl.refresh
#     schedule: every 1h
#     enabled: true
#   ocsp-refresh:          # re-signs OCSP responses; default and longest: every ocsp.validity/8
#     schedule: every 3h
#   ocsp-responder-rotate: # renews the delegated responder certificate before half its life
#     schedule: every 1h
#   managed-renew:         # renews due managed certificates (sigil managed),
#     schedule: every 5m   # revokes superseded versions, destroys expired keys
#   kek-rotate:            # re-wraps every data key under a new KEK version, in batches.
#                          # Off by default: enabled, the server keeps the passphrase
#                          # in memory to derive new versions.
#     schedule: "0 3 1 * *"
#     enabled: true
#   tidy:                  # archives long-expired certificates, purges dead records (see tidy:)
#     schedule: "0 4 * * *"
#   expiry-notify:         # expiry notices to notify.webhook_url and expiry gauges (see notify:)
#     schedule: every 1h
#   intermediate-rotate:   # replaces the intermediate at intermediate.rotate_at of its life and
#     schedule: every 1h   # destroys retired intermediates' keys after their last certificate expired

intermediate:
  # When the active intermediate is replaced by a new one the root signs
  # (sigil ca rotate-intermediate does it by hand): a fraction of its
  # lifetime such as 2/3, 0.75 or 80%. The old one keeps signing CRLs and
  # OCSP responses for its certificates until the last expires.
  rotate_at: {{if .Intermediate.RotateAt}}{{.Intermediate.RotateAt}}{{else}}"2/3"{{end}}
  # How long after the last certificate of a rotated-out intermediate
  # expired its key is destroyed (crypto-shredded); default: crl.validity,
  # so that the last CRL it signed serves its full term.
  # destroy_after: 24h

tidy:
  # How long after expiry a certificate stays in the indexes that OCSP
  # refresh, CRL generation and expiry notices read, and how long dead OCSP
  # responses, ACME orders and authorizations and delivered notices are
  # kept. Certificate records and the audit log are never deleted.
  retention: {{.Tidy.Retention}}

notify:
  # Where expiry notices are POSTed: a JSON array of notices, signed with
  # the Sigil-Signature header (README, "Scheduled jobs"). Empty: none is
  # sent; the expiry gauges on /metrics are kept either way.
  webhook_url: "{{.Notify.WebhookURL}}"
  # File holding the HMAC-SHA256 signing secret, at least 16 bytes
  # (openssl rand -hex 32); required with webhook_url. Relative to this file.
  secret_file: "{{.Notify.SecretFile}}"
  # How long before expiry a notice is due; a certificate gets one notice
  # for the smallest threshold it has crossed, once.
  thresholds: [{{range $i, $t := .Notify.Thresholds}}{{if $i}}, {{end}}{{$t}}{{end}}]
  # Time one POST attempt may take (each POST is tried up to 5 times, with
  # exponential backoff and jitter, within a run).
  timeout: {{.Notify.Timeout}}
  # Most notices one POST carries.
  batch_size: {{.Notify.BatchSize}}

log:
  # debug, info, warn or error.
  level: {{.Log.Level}}
  # text or json.
  format: {{.Log.Format}}

# Issuance profiles. Each one sets:
#   key_usage:        digital_signature, key_encipherment (RSA keys only; dropped
#                     for ECDSA and Ed25519), key_agreement, content_commitment,
#                     data_encipherment
#   ext_key_usage:    server_auth, client_auth, code_signing, email_protection
#   max_validity:     longest validity a request may ask for (down to "1m")
#   default_validity: validity when the request names none (default: max)
#   key_types:        accepted subject keys: ecdsa-p256, ecdsa-p384, ecdsa-p521,
#                     rsa, ed25519 (empty: all)
#   min_rsa_bits:     smallest RSA key accepted; never below 2048
#   names:            name policy. For dns, ip, email and uri: "allow" (empty:
#                     any) and "deny" (always wins). dns entries are suffixes
#                     ("example.com" matches it and every name below it,
#                     ".example.com" only names below it); ip entries are CIDRs;
#                     email entries are domains or addresses; uri entries are
#                     prefixes such as "spiffe://example.org/".
#                     allow_wildcards permits "*.name"; forbid lists name types
#                     that may not appear; max_names caps names per certificate.
profiles:
  tls-server:
    key_usage: [digital_signature, key_encipherment]
    ext_key_usage: [server_auth]
    max_validity: 2160h
    key_types: [ecdsa-p256, ecdsa-p384, rsa, ed25519]
    min_rsa_bits: 2048
    names:
      dns:
        allow: []
        deny: []
      ip:
        allow: ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "::1/128", "fc00::/7"]
      allow_wildcards: false
      forbid: [email]
  tls-client:
    # RFC 5280 4.2.1.12: clientAuth goes with digital_signature (or
    # key_agreement), not key_encipherment.
    key_usage: [digital_signature]
    ext_key_usage: [client_auth]
    max_validity: 2160h
    key_types: [ecdsa-p256, ecdsa-p384, rsa, ed25519]
    min_rsa_bits: 2048
    names:
      uri:
        # SPIFFE IDs of this trust domain, for example.
        allow: []
      allow_wildcards: false
  tls-server-client:
    key_usage: [digital_signature, key_encipherment]
    ext_key_usage: [server_auth, client_auth]
    max_validity: 2160h
    key_types: [ecdsa-p256, ecdsa-p384, rsa, ed25519]
    min_rsa_bits: 2048
    names:
      allow_wildcards: false
`))

// WriteConfig writes a commented sigil.yaml for c.
func WriteConfig(path string, c *Config) error {
	var b bytes.Buffer
	if err := configTemplate.Execute(&b, c); err != nil {
		return fmt.Errorf("render config: %w", err)
	}
	if _, err := ParseConfig(b.Bytes(), filepath.Dir(path)); err != nil {
		return fmt.Errorf("rendered config does not load: %w", err)
	}
	return writeFileAtomic(path, b.Bytes(), 0o644)
}

// writeFileAtomic writes via a temp file, fsync and rename, so a crash never
// leaves a half-written file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	return writeFileAtomicFrom(path, mode, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// writeFileAtomicFrom is writeFileAtomic for content that fill streams: the
// file appears at path, complete and synced, only if fill succeeds; an
// error from fill is returned as is and leaves nothing behind.
func writeFileAtomicFrom(path string, mode os.FileMode, fill func(w io.Writer) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after the rename there is nothing left to remove
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	bw := bufio.NewWriterSize(f, 256<<10)
	if err := fill(bw); err != nil {
		f.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	// The rename is durable once the directory is.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
