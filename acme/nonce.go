package acme

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/store"
)

// NonceStore runs ACME's write transactions, spent nonces among them; ACME
// uses each transaction only through its view, Tx.
type NonceStore interface {
	WithTx(ctx context.Context, fn func(tx store.Tx) error) error
}

// Nonces issues and redeems anti-replay nonces (RFC 8555 §6.5). A nonce is
// base64url(issued ‖ random ‖ HMAC): any node holding the key can check it
// without a lookup, and the store's spent-nonce record makes it single-use
// across restarts and nodes.
type Nonces struct {
	key []byte
	ttl time.Duration
	clk clockwork.Clock
	st  NonceStore
}

const (
	nonceRandLen = 12
	nonceMACLen  = 16
	nonceLen     = 8 + nonceRandLen + nonceMACLen
)

// NewNonces returns a nonce source. key must be at least 32 random bytes
// shared by every node; ttl bounds how long a nonce stays redeemable.
func NewNonces(key []byte, ttl time.Duration, clk clockwork.Clock, st NonceStore) (*Nonces, error) {
	if len(key) < 32 {
		return nil, errors.New("acme: nonce key shorter than 32 bytes")
	}
	if ttl <= 0 {
		return nil, errors.New("acme: nonce ttl must be positive")
	}
	return &Nonces{key: key, ttl: ttl, clk: clk, st: st}, nil
}

// New returns a fresh nonce. It writes nothing.
func (n *Nonces) New() (string, error) {
	b := make([]byte, nonceLen)
	binary.BigEndian.PutUint64(b, uint64(n.clk.Now().Unix()))
	if _, err := rand.Read(b[8 : 8+nonceRandLen]); err != nil {
		return "", fmt.Errorf("nonce: %w", err)
	}
	copy(b[8+nonceRandLen:], n.mac(b[:8+nonceRandLen]))
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func (n *Nonces) mac(msg []byte) []byte {
	h := hmac.New(sha256.New, n.key)
	h.Write(msg)
	return h.Sum(nil)[:nonceMACLen]
}

// Use redeems a nonce: it must be authentic, unexpired and unspent. Every
// failure is a badNonce problem; the caller answers with a fresh nonce.
func (n *Nonces) Use(ctx context.Context, nonce string) error {
	expires, err := n.check(nonce)
	if err != nil {
		return err
	}
	return n.spend(ctx, nonce, expires)
}

// check is Use without the write: whether nonce is authentic and
// unexpired, and when it expires. Requests check it first and spend it
// only once their signature verifies, so a POST nobody signed writes
// nothing.
func (n *Nonces) check(nonce string) (time.Time, error) {
	b, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil || len(b) != nonceLen {
		return time.Time{}, BadNonce("nonce is malformed")
	}
	if !hmac.Equal(b[8+nonceRandLen:], n.mac(b[:8+nonceRandLen])) {
		return time.Time{}, BadNonce("nonce was not issued by this server")
	}
	issued := time.Unix(int64(binary.BigEndian.Uint64(b[:8])), 0)
	now := n.clk.Now()
	expires := issued.Add(n.ttl)
	if now.After(expires) || issued.After(now.Add(time.Minute)) {
		return time.Time{}, BadNonce("nonce has expired")
	}
	return expires, nil
}

// spend records a checked nonce as used; a second spend is badNonce.
func (n *Nonces) spend(ctx context.Context, nonce string, expires time.Time) error {
	err := update(ctx, n.st, func(tx Tx) error { return tx.UseNonce(nonce, expires) })
	if errors.Is(err, store.ErrDuplicate) {
		return BadNonce("nonce was already used")
	}
	if err != nil {
		return fmt.Errorf("record nonce: %w", err)
	}
	return nil
}

// nonceKeySetting names the shared nonce HMAC key in the store's settings.
const nonceKeySetting = "acme.nonce_key"

// KeyStore reads and writes settings.
type KeyStore interface {
	NonceStore
	// Setting returns the value stored under name; store.ErrNotFound if it
	// was never put.
	Setting(ctx context.Context, name string) ([]byte, error)
}

// LoadNonceKey returns the nonce key shared through the store, creating it
// on first use.
func LoadNonceKey(ctx context.Context, st KeyStore) ([]byte, error) {
	key, err := st.Setting(ctx, nonceKeySetting)
	if err == nil && len(key) >= 32 {
		return key, nil
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("load nonce key: %w", err)
	}
	key = make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("nonce key: %w", err)
	}
	if err := update(ctx, st, func(tx Tx) error { return tx.PutSetting(nonceKeySetting, key) }); err != nil {
		return nil, fmt.Errorf("store nonce key: %w", err)
	}
	return key, nil
}
