package ca

import (
	"crypto/x509"
	"fmt"
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

// keyUsageByName maps a config name to its key usage bit.
func keyUsageByName(name string) (x509.KeyUsage, bool) {
	switch name {
	case "digital_signature":
		return x509.KeyUsageDigitalSignature, true
	case "content_commitment":
		return x509.KeyUsageContentCommitment, true
	case "key_encipherment":
		return x509.KeyUsageKeyEncipherment, true
	case "data_encipherment":
		return x509.KeyUsageDataEncipherment, true
	case "key_agreement":
		return x509.KeyUsageKeyAgreement, true
	}
	return 0, false
}

const keyUsageChoices = "content_commitment, data_encipherment, digital_signature, key_agreement, key_encipherment"

// extKeyUsageByName maps a config name to its extended key usage.
func extKeyUsageByName(name string) (x509.ExtKeyUsage, bool) {
	switch name {
	case "server_auth":
		return x509.ExtKeyUsageServerAuth, true
	case "client_auth":
		return x509.ExtKeyUsageClientAuth, true
	case "code_signing":
		return x509.ExtKeyUsageCodeSigning, true
	case "email_protection":
		return x509.ExtKeyUsageEmailProtection, true
	}
	return 0, false
}

const extKeyUsageChoices = "client_auth, code_signing, email_protection, server_auth"

func validKeyType(name string) bool {
	switch name {
	case "ecdsa-p256", "ecdsa-p384", "ecdsa-p521", "rsa", "ed25519":
		return true
	}
	return false
}

const keyTypeChoices = "ecdsa-p256, ecdsa-p384, ecdsa-p521, ed25519, rsa"

// Validate checks a profile definition.
func (p Profile) Validate() error {
	if len(p.KeyUsage) == 0 {
		return fmt.Errorf("key_usage is empty")
	}
	for _, u := range p.KeyUsage {
		if _, ok := keyUsageByName(u); !ok {
			return fmt.Errorf("unknown key_usage %q (want one of %s)", u, keyUsageChoices)
		}
	}
	for _, u := range p.ExtKeyUsage {
		if _, ok := extKeyUsageByName(u); !ok {
			return fmt.Errorf("unknown ext_key_usage %q (want one of %s)", u, extKeyUsageChoices)
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
		if !validKeyType(k) {
			return fmt.Errorf("unknown key type %q (want one of %s)", k, keyTypeChoices)
		}
	}
	if p.MinRSABits != 0 && p.MinRSABits < MinRSABits {
		return fmt.Errorf("min_rsa_bits %d is below the floor of %d", p.MinRSABits, MinRSABits)
	}
	return p.Names.Validate()
}

// keyUsage returns the profile's key usage matched to the subject key: only
// RSA keys can encipher keys or data (RFC 5480 §3, RFC 8813).
func (p Profile) keyUsage(alg keystore.Algorithm) x509.KeyUsage {
	rsa := strings.HasPrefix(string(alg), "rsa-")
	var ku x509.KeyUsage
	for _, u := range p.KeyUsage {
		v, _ := keyUsageByName(u)
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
		if v, ok := extKeyUsageByName(u); ok {
			out = append(out, v)
		}
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
