package ca

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/sigil-ca/sigil/ca/keystore"
)

// ServingCert keeps the HTTPS listener's own certificate fresh: it is issued
// by the active intermediate through the normal path (linted, recorded,
// audited) and renewed once two thirds of its lifetime have passed, or at
// once when another intermediate has become active. Its key lives only in
// memory.
type ServingCert struct {
	a        *Authority
	names    []string
	validity time.Duration

	mu      sync.Mutex
	cert    *tls.Certificate
	renewAt time.Time
}

// servingProfile is built in: it is not selectable through the API.
const servingProfile = "sigil-serving"

// DefaultServingValidity is the serving certificate's lifetime when
// NewServingCert is given none.
const DefaultServingValidity = 7 * 24 * time.Hour

// NewServingCert issues the first serving certificate for names (DNS names
// or IP addresses), valid for validity (DefaultServingValidity if not
// positive).
func (a *Authority) NewServingCert(ctx context.Context, names []string, validity time.Duration) (*ServingCert, error) {
	if validity <= 0 {
		validity = DefaultServingValidity
	}
	s := &ServingCert{a: a, names: names, validity: validity}
	if err := s.renew(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *ServingCert) renew(ctx context.Context) error {
	key, err := keystore.Generate(keystore.ECDSAP256)
	if err != nil {
		return fmt.Errorf("serving key: %w", err)
	}
	tmpl := &x509.CertificateRequest{}
	for _, n := range s.names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	if len(s.names) > 0 {
		tmpl.Subject = pkix.Name{CommonName: s.names[0]}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return fmt.Errorf("serving CSR: %w", err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return fmt.Errorf("serving CSR: %w", err)
	}
	prof := Profile{
		KeyUsage:    []string{"digital_signature"},
		ExtKeyUsage: []string{"server_auth"},
		MaxValidity: Duration(s.validity),
	}
	iss, err := s.a.sign(ctx, SignRequest{CSR: csr, Profile: servingProfile, Requester: "sigil", Channel: ChannelInternal}, &prof)
	if err != nil {
		return fmt.Errorf("issue serving certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(iss.Chain[0])
	if err != nil {
		return fmt.Errorf("serving certificate: %w", err)
	}
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	s.cert = &tls.Certificate{Certificate: iss.Chain, PrivateKey: key, Leaf: leaf}
	s.renewAt = leaf.NotBefore.Add(life * 2 / 3)
	return nil
}

// GetCertificate is a tls.Config hook. It renews when due; if renewal fails
// it keeps serving the current certificate until that expires.
func (s *ServingCert) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.a.clk.Now()
	// After an intermediate rotation the listener moves to the new one at
	// once, so that the old one's last certificates are its customers'.
	if now.After(s.renewAt) || !bytes.Equal(s.cert.Leaf.AuthorityKeyId, s.a.Intermediate().Cert.SubjectKeyId) {
		ctx := context.Background()
		if hello != nil {
			ctx = hello.Context()
		}
		if err := s.renew(context.WithoutCancel(ctx)); err != nil {
			s.a.log.Error("serving certificate renewal failed", "error", err)
			s.renewAt = now.Add(time.Minute) // retry later, not on every handshake
			if now.After(s.cert.Leaf.NotAfter) {
				return nil, err
			}
		}
	}
	return s.cert, nil
}

// Leaf returns the current serving certificate.
func (s *ServingCert) Leaf() *x509.Certificate {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cert.Leaf
}
