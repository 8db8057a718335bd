package keybackend

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// dataKeySize is the size of the data keys a KMS KEK wraps: AES-256, as
// ca/keystore's envelopes use.
const dataKeySize = 32

// The encryption context every wrapped data key is bound to. KMS
// authenticates it (it is the AES-GCM associated data inside KMS), so a
// wrapped data key copied onto another Sigil key id does not unwrap.
const (
	contextKeyID   = "sigil-key-id"
	contextPurpose = "sigil-purpose"
	purposeDEK     = "data-key"
)

// KMSKEK is a key-encryption key held in AWS KMS: data keys are sent to
// KMS's Encrypt and Decrypt and never wrapped locally. It is safe for
// concurrent use.
type KMSKEK struct {
	c     *awsClient
	keyID string // resolved key id
	uri   URI
}

// URI returns the canonical URI of the KMS key, with its resolved key id.
func (k *KMSKEK) URI() URI { return k.uri }

// CreateKEK creates a symmetric KMS key (SYMMETRIC_DEFAULT,
// ENCRYPT_DECRYPT) with alias "alias/NAME" and returns its URI.
func (b *Backend) CreateKEK(ctx context.Context, name string) (URI, error) {
	if b.kind != AWSKMS {
		return URI{}, fmt.Errorf("create kek: backend %s cannot hold a KEK yet", b.kind)
	}
	if !keyName.MatchString(name) {
		return URI{}, fmt.Errorf("create kek: name %q: want 1-200 letters, digits, _ or -", name)
	}
	out, err := b.aws.kms.CreateKey(ctx, &kms.CreateKeyInput{
		Description: aws.String("sigil key-encryption key " + name),
		KeySpec:     types.KeySpecSymmetricDefault,
		KeyUsage:    types.KeyUsageTypeEncryptDecrypt,
		Tags:        []types.Tag{{TagKey: aws.String("sigil-kek"), TagValue: aws.String(name)}},
	})
	if err != nil {
		return URI{}, fmt.Errorf("create kek: %w", awsErr("CreateKey", err))
	}
	if out.KeyMetadata == nil || out.KeyMetadata.KeyId == nil {
		return URI{}, errors.New("create kek: CreateKey returned no key id")
	}
	id := aws.ToString(out.KeyMetadata.KeyId)
	if _, err := b.aws.kms.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/" + name), TargetKeyId: aws.String(id)}); err != nil {
		return URI{}, fmt.Errorf("create kek: %w", awsErr("CreateAlias", err))
	}
	u := b.conn
	u.KeyID = id
	return u, nil
}

// KEK opens the KMS key u names as a KEK: it must be an enabled symmetric
// key for encryption.
func (b *Backend) KEK(ctx context.Context, u URI) (*KMSKEK, error) {
	if b.kind != AWSKMS || u.Kind != AWSKMS {
		return nil, fmt.Errorf("open kek: want an awskms backend and URI, have %s and %s", b.kind, u.Kind)
	}
	if u.KeyID == "" {
		return nil, errors.New("open kek: awskms uri names no key (want key-id= or alias=)")
	}
	md, err := b.aws.describe(ctx, u.KeyID)
	if err != nil {
		return nil, fmt.Errorf("open kek %s: %w", u, err)
	}
	if err := usable(md, types.KeyUsageTypeEncryptDecrypt); err != nil {
		return nil, fmt.Errorf("open kek %s: %w", u, err)
	}
	if md.KeySpec != types.KeySpecSymmetricDefault {
		return nil, fmt.Errorf("open kek %s: key spec %s, want SYMMETRIC_DEFAULT", u, md.KeySpec)
	}
	r := b.conn
	r.KeyID = aws.ToString(md.KeyId)
	return &KMSKEK{c: b.aws, keyID: r.KeyID, uri: r}, nil
}

func encryptionContext(sigilKeyID string) map[string]string {
	return map[string]string{contextKeyID: sigilKeyID, contextPurpose: purposeDEK}
}

// Wrap encrypts a 32-byte data key under the KMS key, bound to sigilKeyID.
// The result is KMS's ciphertext blob, opaque to Sigil.
func (k *KMSKEK) Wrap(ctx context.Context, sigilKeyID string, dek []byte) ([]byte, error) {
	if sigilKeyID == "" {
		return nil, errors.New("wrap data key: empty key id")
	}
	if len(dek) != dataKeySize {
		return nil, fmt.Errorf("wrap data key for %s: %d bytes, want %d", sigilKeyID, len(dek), dataKeySize)
	}
	out, err := k.c.kms.Encrypt(ctx, &kms.EncryptInput{
		KeyId:               aws.String(k.keyID),
		Plaintext:           dek,
		EncryptionContext:   encryptionContext(sigilKeyID),
		EncryptionAlgorithm: types.EncryptionAlgorithmSpecSymmetricDefault,
	})
	if err != nil {
		return nil, fmt.Errorf("wrap data key for %s with %s: %w", sigilKeyID, k.uri, awsErr("Encrypt", err))
	}
	return out.CiphertextBlob, nil
}

// Unwrap decrypts a data key that Wrap wrapped for sigilKeyID. It fails if
// the blob was wrapped for another key id, by another KMS key, or altered.
// The caller clears the result.
func (k *KMSKEK) Unwrap(ctx context.Context, sigilKeyID string, wrapped []byte) ([]byte, error) {
	if sigilKeyID == "" {
		return nil, errors.New("unwrap data key: empty key id")
	}
	out, err := k.c.kms.Decrypt(ctx, &kms.DecryptInput{
		KeyId:               aws.String(k.keyID),
		CiphertextBlob:      wrapped,
		EncryptionContext:   encryptionContext(sigilKeyID),
		EncryptionAlgorithm: types.EncryptionAlgorithmSpecSymmetricDefault,
	})
	if err != nil {
		return nil, fmt.Errorf("unwrap data key for %s with %s: %w", sigilKeyID, k.uri, awsErr("Decrypt", err))
	}
	if len(out.Plaintext) != dataKeySize {
		clear(out.Plaintext)
		return nil, fmt.Errorf("unwrap data key for %s with %s: %d bytes, want %d", sigilKeyID, k.uri, len(out.Plaintext), dataKeySize)
	}
	return out.Plaintext, nil
}
