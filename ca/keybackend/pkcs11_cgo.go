//go:build cgo && !nopkcs11

package keybackend

import (
	"crypto"
	"errors"
	"fmt"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"
)

const pkcs11Built = true

// p11Unreachable reports whether err is a PKCS#11 error meaning the token,
// its module or the session is gone, rather than a refusal.
func p11Unreachable(err error) bool {
	var pe pkcs11.Error
	if !errors.As(err, &pe) {
		return false
	}
	switch pe {
	case pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_DEVICE_ERROR, pkcs11.CKR_TOKEN_NOT_PRESENT,
		pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED, pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED,
		pkcs11.CKR_DEVICE_MEMORY, pkcs11.CKR_USER_NOT_LOGGED_IN:
		return true
	}
	return false
}

// p11Context is a crypto11 context on the same module and token as the
// go.step.sm/crypto/kms/pkcs11 KeyManager, for what apiv1 does not offer:
// reading key attributes and destroying objects.
type p11Context struct {
	ctx *crypto11.Context
}

func openP11(conn URI, pin []byte) (*p11Context, error) {
	cfg := &crypto11.Config{
		Path:        conn.ModulePath,
		TokenLabel:  conn.Token,
		TokenSerial: conn.Serial,
		SlotNumber:  conn.SlotID,
		Pin:         string(pin),
		// Attribute reads are rare: a small pool of its own.
		MaxSessions: 2,
	}
	ctx, err := crypto11.Configure(cfg)
	if err != nil {
		return nil, fmt.Errorf("attributes context: %w", err)
	}
	return &p11Context{ctx: ctx}, nil
}

func (p *p11Context) close() error { return p.ctx.Close() }

// find returns the key pair u names, or nil.
func (p *p11Context) find(u URI) (crypto11.Signer, error) {
	var label []byte
	if u.Object != "" {
		label = []byte(u.Object)
	}
	found, err := p.ctx.FindKeyPairs(u.ID, label)
	if err != nil {
		return nil, fmt.Errorf("find key pair: %w", err)
	}
	switch len(found) {
	case 0:
		return nil, nil
	case 1:
		return found[0], nil
	}
	return nil, fmt.Errorf("%d key pairs match: add id= to the key URI to choose one", len(found))
}

func (p *p11Context) keyExists(u URI) (bool, error) {
	s, err := p.find(u)
	return s != nil, err
}

func (p *p11Context) labelInUse(label string) (bool, error) {
	found, err := p.ctx.FindKeyPairs(nil, []byte(label))
	if err != nil {
		return false, fmt.Errorf("find key pair: %w", err)
	}
	return len(found) > 0, nil
}

// attest reads the private key's CKA_EXTRACTABLE, CKA_SENSITIVE,
// CKA_NEVER_EXTRACTABLE and CKA_ALWAYS_SENSITIVE, and its public key.
func (p *p11Context) attest(u URI) (Attestation, crypto.PublicKey, error) {
	s, err := p.find(u)
	if err != nil {
		return Attestation{}, nil, err
	}
	if s == nil {
		return Attestation{}, nil, ErrNotFound
	}
	attrs, err := p.ctx.GetAttributes(s, []crypto11.AttributeType{
		crypto11.CkaExtractable, crypto11.CkaSensitive, crypto11.CkaNeverExtractable, crypto11.CkaAlwaysSensitive,
	})
	if err != nil {
		return Attestation{}, nil, fmt.Errorf("read key attributes: %w", err)
	}
	flag := func(t crypto11.AttributeType) (bool, error) {
		a := attrs[t]
		if a == nil || len(a.Value) != 1 {
			return false, fmt.Errorf("token did not return attribute %v", t)
		}
		return a.Value[0] != 0, nil
	}
	var v [4]bool
	for i, t := range []crypto11.AttributeType{crypto11.CkaExtractable, crypto11.CkaSensitive, crypto11.CkaNeverExtractable, crypto11.CkaAlwaysSensitive} {
		if v[i], err = flag(t); err != nil {
			return Attestation{}, nil, err
		}
	}
	a := Attestation{
		NonExtractable:   !v[0] && v[1],
		NeverExtractable: !v[0] && v[1] && v[2] && v[3],
		Detail:           fmt.Sprintf("CKA_EXTRACTABLE=%t CKA_SENSITIVE=%t CKA_NEVER_EXTRACTABLE=%t CKA_ALWAYS_SENSITIVE=%t", v[0], v[1], v[2], v[3]),
	}
	return a, s.Public(), nil
}

// destroy calls C_DestroyObject on the key pair's private and public
// objects, and checks that it is gone.
func (p *p11Context) destroy(u URI) error {
	s, err := p.find(u)
	if err != nil {
		return err
	}
	if s == nil {
		return ErrNotFound
	}
	if err := s.Delete(); err != nil {
		return fmt.Errorf("C_DestroyObject: %w", err)
	}
	still, err := p.find(u)
	if err != nil {
		return err
	}
	if still != nil {
		return errors.New("key pair still present after C_DestroyObject")
	}
	return nil
}
