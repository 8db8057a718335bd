package main

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
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

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/acme"
	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/internal/atomicfile"
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

// NodeConfig names this sigil serve among the nodes that share one
// database: the name is recorded on the job runs it makes.
type NodeConfig struct {
	Name string `yaml:"name"` // default: the host name
}

// Config is sigil.yaml. It holds no secrets.
type Config struct {
	Database     string                `yaml:"database"`
	Store        StoreConfig           `yaml:"store"`
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
	Node         NodeConfig            `yaml:"node"`

	dir    string // directory of the config file; relative paths resolve against it
	path   string // the file it was read from, if any
	sha256 string // hex SHA-256 of that file, recorded in the audit log
	// allowBrokenAudit lets serve start on an audit chain that fails its
	// start-up check (--allow-broken-audit, for forensics only).
	allowBrokenAudit bool
	// clock is the server's clock: nil is the wall clock, which sigil
	// serve always uses; in-process tests set a fake one.
	clock clockwork.Clock
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

// orDefault sets *v to def if it is unset (zero). The defaults of what a
// package configures are that package's (its Config's WithDefaults); those
// of what is cmd's own (listeners, logging) are set here.
func orDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// applyDefaults fills every unset field.
func (c *Config) applyDefaults() {
	if c.Node.Name == "" {
		c.Node.Name, _ = os.Hostname() // "" if the host has none: runs then name no node
	}
	if c.Database == "" {
		c.Database = "sigil.db"
	}
	if c.HTTPS.Addr == "" {
		c.HTTPS.Addr = "127.0.0.1:8443"
	}
	if len(c.HTTPS.Names) == 0 {
		c.HTTPS.Names = []string{"localhost", "127.0.0.1"}
	}
	orDefault(&c.HTTPS.CertValidity, ca.Duration(ca.DefaultServingValidity))
	if c.HTTP.Addr == "" {
		c.HTTP.Addr = "127.0.0.1:8080"
	}
	if c.ExternalURL == "" {
		c.ExternalURL = "http://" + c.HTTP.Addr
	}
	orDefault(&c.Limits.MaxBodyBytes, api.Config{}.WithDefaults().MaxBodyBytes)
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
	c.OCSP.applyDefaults()
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	v := acme.ValidationConfig{}.WithDefaults()
	orDefault(&c.ACME.HTTPPort, v.HTTPPort)
	orDefault(&c.ACME.TLSPort, v.TLSPort)
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
		d := ca.Duration(acme.DefaultAuthzReuse)
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
	if err := c.Store.validate(); err != nil {
		errs = append(errs, err)
	}
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

// configTemplateText is the commented sigil.yaml that `sigil init` writes,
// a text/template over Config.
//
//go:embed sigil.yaml.tmpl
var configTemplateText string

var configTemplate = template.Must(template.New("sigil.yaml").Funcs(template.FuncMap{"join": strings.Join}).Parse(configTemplateText))

// WriteConfig writes a commented sigil.yaml for c.
func WriteConfig(path string, c *Config) error {
	var b bytes.Buffer
	if err := configTemplate.Execute(&b, c); err != nil {
		return fmt.Errorf("render config: %w", err)
	}
	if _, err := ParseConfig(b.Bytes(), filepath.Dir(path)); err != nil {
		return fmt.Errorf("rendered config does not load: %w", err)
	}
	return atomicfile.WriteFile(path, b.Bytes(), 0o644)
}
