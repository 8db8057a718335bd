package keybackend

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"unicode"

	"go.step.sm/crypto/kms/apiv1"
	"go.step.sm/crypto/kms/pkcs11"
)

// ErrPKCS11NotBuilt is wrapped by Open's error for a pkcs11 URI in a binary
// built without cgo (or with the nopkcs11 tag).
var ErrPKCS11NotBuilt = errors.New("the pkcs11 key backend is not in this build: it needs cgo (build with CGO_ENABLED=1 and a C compiler)")

// openPKCS11 logs in to the token u names, twice: once through
// go.step.sm/crypto/kms/pkcs11 (keys, signers) and once through crypto11
// directly (attributes and destruction, which apiv1 does not offer). Both
// share the loaded module and its login.
func openPKCS11(ctx context.Context, u URI, cfg Config) (*Backend, error) {
	if !pkcs11Built {
		return nil, fmt.Errorf("open pkcs11 backend: %w", ErrPKCS11NotBuilt)
	}
	pin, err := readPIN(u, cfg)
	if err != nil {
		return nil, fmt.Errorf("open pkcs11 backend: %w", err)
	}
	defer clear(pin)
	conn := u.connection()
	km, err := pkcs11.New(ctx, apiv1.Options{Type: apiv1.PKCS11, URI: conn.stepURI(), Pin: string(pin)})
	if err != nil {
		return nil, fmt.Errorf("open pkcs11 token %s: %w", conn, err)
	}
	p11, err := openP11(conn, pin)
	if err != nil {
		_ = km.Close()
		return nil, fmt.Errorf("open pkcs11 token %s: %w", conn, err)
	}
	return &Backend{kind: PKCS11, conn: conn, km: km, p11: p11}, nil
}

// readPIN returns the PIN from u's pin-source file, else cfg.PIN. A PIN file
// readable by group or others is refused, as ssh refuses such a key file.
func readPIN(u URI, cfg Config) ([]byte, error) {
	if u.PINSource == "" {
		if len(cfg.PIN) == 0 {
			return nil, errors.New("no PIN: give pin-source=/path/to/pin-file in the key URI, or set SIGIL_HSM_PIN")
		}
		return bytes.Clone(cfg.PIN), nil
	}
	fi, err := os.Stat(u.PINSource)
	if err != nil {
		return nil, fmt.Errorf("pin-source: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("pin-source %s is readable by group or others (mode %v): chmod 600 it", u.PINSource, fi.Mode().Perm())
	}
	b, err := os.ReadFile(u.PINSource)
	if err != nil {
		return nil, fmt.Errorf("pin-source: %w", err)
	}
	pin := bytes.TrimRightFunc(b, unicode.IsSpace)
	if len(pin) == 0 {
		clear(b)
		return nil, fmt.Errorf("pin-source %s is empty", u.PINSource)
	}
	out := bytes.Clone(pin)
	clear(b)
	return out, nil
}

// connection returns u without its key attributes: what names the token
// (or the KMS account) alone.
func (u URI) connection() URI {
	c := u
	c.Object, c.ID, c.KeyID = "", nil, ""
	return c
}

// stepURI is u in the form go.step.sm/crypto/kms/pkcs11 reads, without any
// PIN (Open passes the PIN separately).
func (u URI) stepURI() string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+escape(v))
		}
	}
	add("module-path", u.ModulePath)
	add("token", u.Token)
	add("serial", u.Serial)
	if u.SlotID != nil {
		add("slot-id", strconv.Itoa(*u.SlotID))
	}
	if len(u.ID) > 0 {
		add("id", fmt.Sprintf("%x", u.ID))
	}
	add("object", u.Object)
	if u.MaxSessions != 0 {
		add("max-sessions", strconv.Itoa(u.MaxSessions))
	}
	return "pkcs11:" + strings.Join(parts, ";")
}

// idSize is the length of the random CKA_ID given to a key created without one.
const idSize = 16

func (b *Backend) createPKCS11(_ context.Context, u URI, alg apiv1.SignatureAlgorithm, bits int) (*Key, error) {
	if u.connection().String() != b.conn.String() {
		return nil, fmt.Errorf("key uri names token %s, backend is open on %s", u.connection(), b.conn)
	}
	exists, err := b.p11.labelInUse(u.Object)
	if err != nil {
		return nil, err
	}
	if exists {
		return nil, fmt.Errorf("object %q already exists on the token: choose another label, or load the existing key", u.Object)
	}
	if len(u.ID) == 0 {
		u.ID = make([]byte, idSize)
		if _, err := rand.Read(u.ID); err != nil {
			return nil, fmt.Errorf("key id: %w", err)
		}
	}
	resp, err := b.km.CreateKey(&apiv1.CreateKeyRequest{Name: u.stepURI(), SignatureAlgorithm: alg, Bits: bits})
	if err != nil {
		return nil, err
	}
	signer, err := b.km.CreateSigner(&resp.CreateSignerRequest)
	if err != nil {
		return nil, err
	}
	if !samePublic(signer.Public(), resp.PublicKey) {
		return nil, errors.New("the token returned a signer for another key than it created")
	}
	return &Key{URI: u, Signer: signer}, nil
}

func (b *Backend) loadPKCS11(_ context.Context, u URI) (*Key, error) {
	if u.connection().String() != b.conn.String() {
		return nil, fmt.Errorf("key uri names token %s, backend is open on %s", u.connection(), b.conn)
	}
	found, err := b.p11.keyExists(u)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, ErrNotFound
	}
	signer, err := b.km.CreateSigner(&apiv1.CreateSignerRequest{SigningKey: u.stepURI()})
	if err != nil {
		return nil, err
	}
	return &Key{URI: u, Signer: signer}, nil
}
