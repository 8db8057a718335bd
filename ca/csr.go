package ca

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"net"
	"net/mail"
	"net/url"
	"strings"
)

// MaxCSRBytes bounds a CSR before parsing; a P-256 CSR with a hundred names
// is well under 16 KiB.
const MaxCSRBytes = 64 << 10

// ParseCSR decodes a PEM ("CERTIFICATE REQUEST") or DER CSR. It checks
// structure only; Sign checks the signature and policy.
func ParseCSR(data []byte) (*x509.CertificateRequest, error) {
	if len(data) == 0 {
		return nil, errorf(BadCSR, "empty CSR")
	}
	if len(data) > MaxCSRBytes {
		return nil, errorf(BadCSR, "CSR larger than %d bytes", MaxCSRBytes)
	}
	der := data
	if block, rest := pem.Decode(data); block != nil {
		if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
			return nil, errorf(BadCSR, "PEM block is %q, want CERTIFICATE REQUEST", block.Type)
		}
		if strings.TrimSpace(string(rest)) != "" {
			return nil, errorf(BadCSR, "trailing data after the CSR PEM block")
		}
		der = block.Bytes
	} else if strings.Contains(string(data[:min(len(data), 64)]), "-----BEGIN") {
		return nil, errorf(BadCSR, "malformed PEM")
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, errorf(BadCSR, "cannot parse CSR: %v", err)
	}
	return csr, nil
}

// csrNames normalizes and syntax-checks the CSR's names and returns them
// with the common name, which must repeat one of them.
func csrNames(csr *x509.CertificateRequest) (Names, string, error) {
	var n Names
	seen := map[string]bool{}
	for _, d := range csr.DNSNames {
		d = strings.ToLower(strings.TrimSuffix(d, "."))
		if err := validDNSName(d, true); err != nil {
			return Names{}, "", errorf(BadCSR, "DNS name %q: %v", d, err)
		}
		if !seen["dns:"+d] {
			seen["dns:"+d] = true
			n.DNS = append(n.DNS, d)
		}
	}
	for _, ip := range csr.IPAddresses {
		if ip4 := ip.To4(); ip4 != nil {
			ip = ip4
		}
		if ip.IsUnspecified() {
			return Names{}, "", errorf(BadCSR, "IP address %s is unspecified", ip)
		}
		if !seen["ip:"+ip.String()] {
			seen["ip:"+ip.String()] = true
			n.IPs = append(n.IPs, ip)
		}
	}
	for _, e := range csr.EmailAddresses {
		a, err := mail.ParseAddress(e)
		if err != nil || a.Address != e || a.Name != "" {
			return Names{}, "", errorf(BadCSR, "email address %q is malformed", e)
		}
		at := strings.LastIndexByte(e, '@')
		if err := validDNSName(strings.ToLower(e[at+1:]), false); err != nil {
			return Names{}, "", errorf(BadCSR, "email address %q: domain: %v", e, err)
		}
		if !seen["email:"+e] {
			seen["email:"+e] = true
			n.Email = append(n.Email, e)
		}
	}
	for _, u := range csr.URIs {
		if _, err := canonicalURI(u); err != nil {
			return Names{}, "", errorf(BadCSR, "URI %q is not in canonical form: %v", u, err)
		}
		if !seen["uri:"+u.String()] {
			seen["uri:"+u.String()] = true
			n.URIs = append(n.URIs, u)
		}
	}
	if n.Count() == 0 {
		return Names{}, "", errorf(BadCSR, "CSR has no subject alternative names; a common name alone is not accepted")
	}
	cn := csr.Subject.CommonName
	if cn == "" {
		return n, "", nil
	}
	// RFC 5280 upper bound ub-common-name.
	if len(cn) > 64 {
		return Names{}, "", errorf(BadCSR, "common name is longer than 64 characters; leave it empty and rely on the subject alternative names")
	}
	if !cnIsSAN(cn, n) {
		return Names{}, "", errorf(BadCSR, "common name %q is not among the subject alternative names", cn)
	}
	if d := strings.ToLower(strings.TrimSuffix(cn, ".")); contains(n.DNS, d) {
		cn = d
	}
	return n, cn, nil
}

func cnIsSAN(cn string, n Names) bool {
	if contains(n.DNS, strings.ToLower(strings.TrimSuffix(cn, "."))) || contains(n.Email, cn) {
		return true
	}
	if ip := net.ParseIP(cn); ip != nil {
		for _, v := range n.IPs {
			if v.Equal(ip) {
				return true
			}
		}
	}
	if u, err := url.Parse(cn); err == nil {
		for _, v := range n.URIs {
			if v.String() == u.String() {
				return true
			}
		}
	}
	return false
}

// NormalizeSerial accepts a serial as people copy it (hex, any case, with or
// without leading zeros or colons, as openssl prints it) and returns the
// stored form. RFC 5280 §4.1.2.2: positive, at most 20 octets.
func NormalizeSerial(s string) (string, error) {
	h := strings.ReplaceAll(strings.TrimSpace(s), ":", "")
	h = strings.TrimPrefix(strings.TrimPrefix(h, "0x"), "0X")
	n, ok := new(big.Int).SetString(h, 16)
	if !ok || h == "" || strings.HasPrefix(h, "-") || strings.HasPrefix(h, "+") || n.Sign() <= 0 || len(n.Bytes()) > 20 {
		return "", errorf(Malformed, "serial %q is not a positive hexadecimal number of at most 20 octets", s)
	}
	return SerialString(n), nil
}

// checkRSAExponent refuses RSA subject keys whose public exponent is not
// 65537: other exponents are legal but rare, small ones have a history of
// signature forgeries against lax verifiers, and no client needs them.
func checkRSAExponent(pub crypto.PublicKey) error {
	if k, ok := pub.(*rsa.PublicKey); ok && k.E != 65537 {
		return errorf(BadCSR, "RSA public exponent must be 65537, not %d", k.E)
	}
	return nil
}
