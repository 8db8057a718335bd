package agent

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/url"
	"strings"
	"time"
)

// Bundle is the answer of GET /v1/managed/{name}/bundle: a certificate
// the CA issues and renews itself, with its key. KeyPEM is a Secret, so a
// Bundle never prints its key.
type Bundle struct {
	Name      string    `json:"name"`
	Version   int       `json:"version"`
	Serial    string    `json:"serial"` // hex
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	ChainPEM  string    `json:"chain_pem"` // leaf first
	KeyPEM    Secret    `json:"key_pem"`   // PKCS#8 PEM
}

// LogValue shows what identifies the bundle, never its key.
func (b Bundle) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", b.Name), slog.Int("version", b.Version), slog.String("serial", b.Serial),
		slog.Time("not_after", b.NotAfter))
}

// errNotNewer means the CA serves the certificate already on disk (or an
// older one): it has not renewed it yet.
var errNotNewer = errors.New("the CA has not renewed the managed certificate yet")

// fetchManaged fetches the managed bundle, presenting the current pair (if
// any) and the token (if any), checks it and writes it if it is newer
// than cur (nil: no pair on disk yet).
func (a *Agent) fetchManaged(ctx context.Context, cur *tls.Certificate) (renewed, error) {
	path := "/v1/managed/" + url.PathEscape(a.cfg.Managed) + "/bundle"
	resp, err := a.v1.ManagedBundle(ctx, a.cfg.Managed)
	if err != nil {
		// A decoding error quotes no value, so no key material.
		return renewed{}, fmt.Errorf("GET %s: %w", path, err)
	}
	b := Bundle{Name: resp.Name, Version: resp.Version, Serial: resp.Serial, NotBefore: resp.NotBefore, NotAfter: resp.NotAfter,
		ChainPEM: resp.ChainPEM, KeyPEM: Secret(resp.KeyPEM)}
	chain, key, err := a.checkBundle(b)
	if err != nil {
		return renewed{}, fmt.Errorf("GET %s: the bundle cannot be used: %w", path, err)
	}
	leaf := chain[0]
	a.mu.Lock()
	lastVersion := a.managedVersion
	a.mu.Unlock()
	if cur != nil && (leaf.SerialNumber.Cmp(cur.Leaf.SerialNumber) == 0 || leaf.NotBefore.Before(cur.Leaf.NotBefore) ||
		leaf.NotAfter.Before(cur.Leaf.NotAfter) || b.Version < lastVersion) {
		// The same certificate, or an older one (a lagging replica):
		// never replace what is on disk with it.
		return renewed{}, fmt.Errorf("%w (it serves serial %s, version %d)", errNotNewer, serialHex(leaf), b.Version)
	}
	keyChanged := cur == nil || !samePublic(cur.Leaf.PublicKey, key.Public())
	keyPEM, err := pkcs8PEM(key)
	if err != nil {
		return renewed{}, err
	}
	defer clear(keyPEM)
	if err := a.files.write([]byte(b.ChainPEM), keyPEM, keyChanged); err != nil {
		return renewed{}, err
	}
	a.mu.Lock()
	a.managedVersion = b.Version
	a.mu.Unlock()
	a.log.InfoContext(ctx, "fetched the managed bundle", "bundle", b)
	return renewed{leaf: leaf, keyChanged: keyChanged}, nil
}

// checkBundle checks that b is the named certificate, that its fields
// agree with its chain, that the key belongs to the leaf and that the
// chain verifies now.
func (a *Agent) checkBundle(b Bundle) ([]*x509.Certificate, crypto.Signer, error) {
	if b.Name != a.cfg.Managed {
		return nil, nil, fmt.Errorf("it is for %q, not %q", b.Name, a.cfg.Managed)
	}
	chain, err := parseChain([]byte(b.ChainPEM))
	if err != nil {
		return nil, nil, err
	}
	leaf := chain[0]
	serial, ok := new(big.Int).SetString(strings.TrimPrefix(strings.ToLower(strings.ReplaceAll(b.Serial, ":", "")), "0x"), 16)
	if !ok || serial.Cmp(leaf.SerialNumber) != 0 {
		return nil, nil, fmt.Errorf("serial %q is not the leaf's %s", b.Serial, serialHex(leaf))
	}
	if !b.NotAfter.Equal(leaf.NotAfter) || !b.NotBefore.Equal(leaf.NotBefore) {
		return nil, nil, fmt.Errorf("validity %v to %v is not the leaf's %v to %v", b.NotBefore, b.NotAfter, leaf.NotBefore, leaf.NotAfter)
	}
	key, err := parseKey([]byte(b.KeyPEM))
	if err != nil {
		return nil, nil, err
	}
	if err := a.checkChain(chain, key.Public()); err != nil {
		return nil, nil, err
	}
	return chain, key, nil
}

// parseKey reads one PKCS#8 PEM private key. Its errors never quote the
// input.
func parseKey(data []byte) (crypto.Signer, error) {
	b, rest := pem.Decode(data)
	if b == nil || b.Type != "PRIVATE KEY" || strings.TrimSpace(string(rest)) != "" {
		return nil, errors.New("key_pem is not one PKCS#8 PRIVATE KEY PEM block")
	}
	defer clear(b.Bytes)
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, errors.New("key_pem does not parse as PKCS#8")
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key_pem holds a %T, which cannot sign", k)
	}
	return s, nil
}

func samePublic(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}
