package keybackend

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// Keys opens signing keys by backend and URI, keeping one Backend open per
// token or KMS configuration. It is what ca/keystore calls (its BackendKeys
// interface) for a key whose record names a backend. Safe for concurrent
// use; Close closes every backend it opened.
type Keys struct {
	cfg Config

	mu       sync.Mutex
	backends map[string]*Backend // by connection URI
	closed   bool
}

// NewKeys returns a Keys that opens backends with cfg (cfg.PIN is copied).
func NewKeys(cfg Config) *Keys {
	return &Keys{cfg: Config{PIN: bytes.Clone(cfg.PIN)}, backends: map[string]*Backend{}}
}

// backend returns the open backend for u's connection, opening it once.
func (k *Keys) backend(ctx context.Context, u URI) (*Backend, error) {
	conn := u.connection().String()
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil, errors.New("key backends are closed")
	}
	if b := k.backends[conn]; b != nil {
		return b, nil
	}
	b, err := Open(ctx, u, k.cfg)
	if err != nil {
		return nil, err
	}
	k.backends[conn] = b
	return b, nil
}

// LoadSigner returns the signer of the key uri names; backend must be the
// URI's kind (the key record's Backend).
func (k *Keys) LoadSigner(ctx context.Context, backend, uri string) (crypto.Signer, error) {
	u, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	if string(u.Kind) != backend {
		return nil, fmt.Errorf("key uri is %s, its record says backend %s", u.Kind, backend)
	}
	b, err := k.backend(ctx, u)
	if err != nil {
		return nil, err
	}
	key, err := b.Load(ctx, u)
	if err != nil {
		return nil, err
	}
	return key.Signer, nil
}

// CreateOrLoad returns the key uri names, creating it first when it does
// not exist yet: a pkcs11 object that is not on the token, or an awskms URI
// without a key id (name is then the new key's alias prefix). alg is a
// ca/keystore algorithm name. The returned key's URI is the one to record.
func (k *Keys) CreateOrLoad(ctx context.Context, uri, name, alg string) (*Key, error) {
	u, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	b, err := k.backend(ctx, u)
	if err != nil {
		return nil, err
	}
	switch {
	case u.Kind == AWSKMS && u.KeyID == "":
		return b.Create(ctx, u, name, alg)
	case u.Kind == PKCS11:
		key, err := b.Load(ctx, u)
		if errors.Is(err, ErrNotFound) {
			return b.Create(ctx, u, name, alg)
		}
		return key, err
	}
	return b.Load(ctx, u)
}

// CreateLike creates a signing key of algorithm alg in the same backend as
// the key likeURI names: for awskms in the same account and region (name is
// the alias prefix), for pkcs11 on the same token with the label NAME-<8
// random hex digits>. It returns the signer and the new key's URI.
func (k *Keys) CreateLike(ctx context.Context, backend, likeURI, name, alg string) (crypto.Signer, string, error) {
	u, err := ParseURI(likeURI)
	if err != nil {
		return nil, "", err
	}
	if string(u.Kind) != backend {
		return nil, "", fmt.Errorf("key uri is %s, its record says backend %s", u.Kind, backend)
	}
	b, err := k.backend(ctx, u)
	if err != nil {
		return nil, "", err
	}
	n := u.connection()
	if u.Kind == PKCS11 {
		suffix := make([]byte, 4)
		if _, err := rand.Read(suffix); err != nil {
			return nil, "", fmt.Errorf("label: %w", err)
		}
		n.Object = fmt.Sprintf("%s-%x", name, suffix)
	}
	key, err := b.Create(ctx, n, name, alg)
	if err != nil {
		return nil, "", err
	}
	return key.Signer, key.URI.String(), nil
}

// DefaultPendingDays is the AWS KMS deletion window DestroyKey asks for:
// the longest KMS allows, so that a mistaken destruction can be cancelled.
const DefaultPendingDays = 30

// DestroyKey destroys the key uri names in its backend and returns what to
// record in the audit event: C_DestroyObject in PKCS#11 (a key already gone
// counts as destroyed, so a retry after a failed record is harmless),
// ScheduleKeyDeletion in AWS KMS with DefaultPendingDays (the deletion date
// is returned; a key already pending deletion returns its schedule).
func (k *Keys) DestroyKey(ctx context.Context, backend, uri string) (map[string]string, error) {
	u, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	if string(u.Kind) != backend {
		return nil, fmt.Errorf("key uri is %s, its record says backend %s", u.Kind, backend)
	}
	b, err := k.backend(ctx, u)
	if err != nil {
		return nil, err
	}
	d, err := b.Destroy(ctx, u, DefaultPendingDays)
	switch {
	case errors.Is(err, ErrNotFound) && u.Kind == PKCS11:
		return map[string]string{"backend_destruction": "already absent from the token"}, nil
	case err != nil:
		return nil, err
	case d.Immediate:
		return map[string]string{"backend_destruction": "C_DestroyObject"}, nil
	}
	return map[string]string{
		"backend_destruction": "ScheduleKeyDeletion",
		"deletion_date":       d.DeletionDate.Format(time.RFC3339),
		"pending_days":        strconv.Itoa(int(d.PendingDays)),
	}, nil
}

// Close closes every backend opened so far; later calls fail.
func (k *Keys) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.closed = true
	clear(k.cfg.PIN)
	var errs []error
	for _, b := range k.backends {
		errs = append(errs, b.Close())
	}
	clear(k.backends)
	return errors.Join(errs...)
}
