package ca

import (
	"crypto/x509"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/sigil-ca/sigil/ca/keystore"
)

// MinRSABits is the floor no profile can lower.
const MinRSABits = 2048

// Profile is a named issuance template: what a certificate may contain and
// for how long it may be valid.
type Profile struct {
	// KeyUsage names: digital_signature, key_encipherment, key_agreement,
	// content_commitment, data_encipherment. key_encipherment and
	// data_encipherment apply to RSA keys only and are dropped for others.
	KeyUsage []string `yaml:"key_usage" json:"key_usage"`
	// ExtKeyUsage names: server_auth, client_auth, code_signing, email_protection.
	ExtKeyUsage []string `yaml:"ext_key_usage" json:"ext_key_usage"`
	// MaxValidity caps the requested validity; DefaultValidity applies when
	// the request names none (default: MaxValidity).
	MaxValidity     Duration `yaml:"max_validity" json:"max_validity"`
	DefaultValidity Duration `yaml:"default_validity,omitempty" json:"default_validity,omitempty"`
	// KeyTypes lists accepted subject key algorithms: ecdsa-p256, ecdsa-p384,
	// ecdsa-p521, rsa (any size >= MinRSABits), ed25519. Empty: all of them.
	KeyTypes   []string `yaml:"key_types,omitempty" json:"key_types,omitempty"`
	MinRSABits int      `yaml:"min_rsa_bits,omitempty" json:"min_rsa_bits,omitempty"`
	// Names is the policy every subject name must satisfy.
	Names NamePolicy `yaml:"names" json:"names"`
}

// Duration is a time.Duration that reads and writes as "2160h".
type Duration time.Duration

// UnmarshalText parses Go duration syntax.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: %w", b, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes Go duration syntax.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

var keyUsageNames = map[string]x509.KeyUsage{
	"digital_signature":  x509.KeyUsageDigitalSignature,
	"content_commitment": x509.KeyUsageContentCommitment,
	"key_encipherment":   x509.KeyUsageKeyEncipherment,
	"data_encipherment":  x509.KeyUsageDataEncipherment,
	"key_agreement":      x509.KeyUsageKeyAgreement,
}

var extKeyUsageNames = map[string]x509.ExtKeyUsage{
	"server_auth":      x509.ExtKeyUsageServerAuth,
	"client_auth":      x509.ExtKeyUsageClientAuth,
	"code_signing":     x509.ExtKeyUsageCodeSigning,
	"email_protection": x509.ExtKeyUsageEmailProtection,
}

var keyTypeNames = map[string]bool{
	"ecdsa-p256": true, "ecdsa-p384": true, "ecdsa-p521": true, "rsa": true, "ed25519": true,
}

// Validate checks a profile definition.
func (p Profile) Validate() error {
	if len(p.KeyUsage) == 0 {
		return fmt.Errorf("key_usage is empty")
	}
	for _, u := range p.KeyUsage {
		if _, ok := keyUsageNames[u]; !ok {
			return fmt.Errorf("unknown key_usage %q (want one of %s)", u, names(keyUsageNames))
		}
	}
	for _, u := range p.ExtKeyUsage {
		if _, ok := extKeyUsageNames[u]; !ok {
			return fmt.Errorf("unknown ext_key_usage %q (want one of %s)", u, names(extKeyUsageNames))
		}
	}
	if p.MaxValidity < Duration(time.Minute) {
		return fmt.Errorf("max_validity %s is below one minute", time.Duration(p.MaxValidity))
	}
	if p.DefaultValidity < 0 {
		return fmt.Errorf("default_validity %s is negative", time.Duration(p.DefaultValidity))
	}
	if p.DefaultValidity > p.MaxValidity {
		return fmt.Errorf("default_validity %s exceeds max_validity %s", time.Duration(p.DefaultValidity), time.Duration(p.MaxValidity))
	}
	for _, k := range p.KeyTypes {
		if !keyTypeNames[k] {
			return fmt.Errorf("unknown key type %q (want one of %s)", k, names(keyTypeNames))
		}
	}
	if p.MinRSABits != 0 && p.MinRSABits < MinRSABits {
		return fmt.Errorf("min_rsa_bits %d is below the floor of %d", p.MinRSABits, MinRSABits)
	}
	return p.Names.Validate()
}

func names[V any](m map[string]V) string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// keyUsage returns the profile's key usage matched to the subject key: only
// RSA keys can encipher keys or data (RFC 5480 §3, RFC 8813).
func (p Profile) keyUsage(alg keystore.Algorithm) x509.KeyUsage {
	rsa := strings.HasPrefix(string(alg), "rsa-")
	var ku x509.KeyUsage
	for _, u := range p.KeyUsage {
		v := keyUsageNames[u]
		if !rsa && (v == x509.KeyUsageKeyEncipherment || v == x509.KeyUsageDataEncipherment) {
			continue
		}
		if alg == keystore.Ed25519 && v == x509.KeyUsageKeyAgreement {
			continue
		}
		ku |= v
	}
	if ku == 0 {
		ku = x509.KeyUsageDigitalSignature
	}
	return ku
}

func (p Profile) extKeyUsage() []x509.ExtKeyUsage {
	out := make([]x509.ExtKeyUsage, 0, len(p.ExtKeyUsage))
	for _, u := range p.ExtKeyUsage {
		out = append(out, extKeyUsageNames[u])
	}
	return out
}

// checkKey refuses subject keys the profile does not accept.
func (p Profile) checkKey(alg keystore.Algorithm, rsaBits int) error {
	typ := string(alg)
	if rsaBits > 0 {
		typ = "rsa"
		floor := max(p.MinRSABits, MinRSABits)
		if rsaBits < floor {
			return fmt.Errorf("RSA key of %d bits is too weak (minimum %d)", rsaBits, floor)
		}
		if rsaBits > 8192 {
			return fmt.Errorf("RSA key of %d bits is too large (maximum 8192)", rsaBits)
		}
	}
	if len(p.KeyTypes) == 0 {
		return nil
	}
	for _, k := range p.KeyTypes {
		if k == typ {
			return nil
		}
	}
	return fmt.Errorf("key type %s is not allowed by this profile (allowed: %s)", alg, strings.Join(p.KeyTypes, ", "))
}

// DefaultProfiles returns the built-in tls-server, tls-client and
// tls-server-client profiles, each valid for at most 90 days.
func DefaultProfiles() map[string]Profile {
	v := Duration(90 * 24 * time.Hour)
	mk := func(ku []string, eku ...string) Profile {
		return Profile{
			KeyUsage:    ku,
			ExtKeyUsage: eku,
			MaxValidity: v,
			KeyTypes:    []string{"ecdsa-p256", "ecdsa-p384", "rsa", "ed25519"},
			MinRSABits:  MinRSABits,
		}
	}
	return map[string]Profile{
		"tls-server": mk([]string{"digital_signature", "key_encipherment"}, "server_auth"),
		// RFC 5280 §4.2.1.12: clientAuth is consistent with digitalSignature
		// and keyAgreement only; keyEncipherment would fail the lint gate
		// for every RSA key.
		"tls-client":        mk([]string{"digital_signature"}, "client_auth"),
		"tls-server-client": mk([]string{"digital_signature", "key_encipherment"}, "server_auth", "client_auth"),
	}
}

// String writes Go duration syntax, e.g. "2160h0m0s".
func (d Duration) String() string { return time.Duration(d).String() }
