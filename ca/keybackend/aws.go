package keybackend

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"regexp"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"go.step.sm/crypto/kms/apiv1"
	"go.step.sm/crypto/kms/awskms"
)

// ErrUnavailable is wrapped by errors that come from not reaching the
// backend at all (connection refused, timeout), as opposed to the backend
// refusing: callers answer 503 and retry.
var ErrUnavailable = errors.New("key backend unavailable")

// awsClient is an AWS KMS client configured exactly as
// go.step.sm/crypto/kms/awskms configures its own, for the calls awskms does
// not make: DescribeKey, ScheduleKeyDeletion, Encrypt and Decrypt.
type awsClient struct {
	kms *kms.Client
}

// keyName is what Create accepts as an AWS key's name (its alias prefix).
var keyName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,200}$`)

// stepAWSURI is u's connection attributes in the form awskms.New reads.
func (u URI) stepAWSURI() string {
	c := u.connection()
	return c.String()
}

func openAWS(ctx context.Context, u URI) (*Backend, error) {
	conn := u.connection()
	var opts []func(*config.LoadOptions) error
	if conn.Region != "" {
		opts = append(opts, config.WithRegion(conn.Region))
	}
	if conn.Profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(conn.Profile))
	}
	if conn.CredentialsFile != "" {
		opts = append(opts, config.WithSharedConfigFiles([]string{conn.CredentialsFile}))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("open awskms backend %s: load AWS config: %w", conn, err)
	}
	if cfg.Region == "" {
		return nil, fmt.Errorf("open awskms backend %s: no region: give region= in the key URI or set AWS_REGION", conn)
	}
	km, err := awskms.New(ctx, apiv1.Options{Type: apiv1.AmazonKMS, URI: conn.stepAWSURI()})
	if err != nil {
		return nil, fmt.Errorf("open awskms backend %s: %w", conn, err)
	}
	return &Backend{kind: AWSKMS, conn: conn, km: km, aws: &awsClient{kms: kms.NewFromConfig(cfg)}}, nil
}

// awsErr wraps an SDK error, marking a failure to reach KMS as ErrUnavailable.
func awsErr(op string, err error) error {
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
	}
	var nf *types.NotFoundException
	if errors.As(err, &nf) {
		return fmt.Errorf("%s: %w: %w", op, ErrNotFound, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// describe returns the metadata of the key u names (resolving an alias).
func (c *awsClient) describe(ctx context.Context, keyID string) (*types.KeyMetadata, error) {
	out, err := c.kms.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(keyID)})
	if err != nil {
		return nil, awsErr("DescribeKey", err)
	}
	if out.KeyMetadata == nil || out.KeyMetadata.KeyId == nil {
		return nil, errors.New("DescribeKey: no key metadata")
	}
	return out.KeyMetadata, nil
}

// usable checks that md is an enabled key of the wanted usage.
func usable(md *types.KeyMetadata, usage types.KeyUsageType) error {
	if md.KeyUsage != usage {
		return fmt.Errorf("key %s has usage %s, want %s", aws.ToString(md.KeyId), md.KeyUsage, usage)
	}
	if md.KeyState != types.KeyStateEnabled {
		return fmt.Errorf("key %s is %s, not Enabled", aws.ToString(md.KeyId), md.KeyState)
	}
	return nil
}

func (b *Backend) createAWS(ctx context.Context, u URI, name string, alg apiv1.SignatureAlgorithm, bits int) (*Key, error) {
	if u.KeyID != "" {
		return nil, errors.New("awskms uri for a new key must not name a key-id or alias")
	}
	if !keyName.MatchString(name) {
		return nil, fmt.Errorf("key name %q: want 1-200 letters, digits, _ or -", name)
	}
	resp, err := b.km.CreateKey(&apiv1.CreateKeyRequest{Name: name, SignatureAlgorithm: alg, Bits: bits})
	if err != nil {
		return nil, awsErr("CreateKey", err)
	}
	created, err := ParseURI(resp.Name)
	if err != nil || created.KeyID == "" {
		return nil, fmt.Errorf("CreateKey returned an unexpected key name")
	}
	k := b.conn
	k.KeyID = created.KeyID
	signer, err := b.km.CreateSigner(&apiv1.CreateSignerRequest{SigningKey: "awskms:key-id=" + k.KeyID})
	if err != nil {
		return nil, awsErr("create signer", err)
	}
	if !samePublic(signer.Public(), resp.PublicKey) {
		return nil, errors.New("KMS returned a signer for another key than it created")
	}
	return &Key{URI: k, Signer: signer}, nil
}

func (b *Backend) loadAWS(ctx context.Context, u URI) (*Key, error) {
	if u.KeyID == "" {
		return nil, errors.New("awskms uri names no key (want key-id= or alias=)")
	}
	md, err := b.aws.describe(ctx, u.KeyID)
	if err != nil {
		return nil, err
	}
	if err := usable(md, types.KeyUsageTypeSignVerify); err != nil {
		return nil, err
	}
	// The resolved id, not an alias: awskms lower-cases what it is given,
	// and an alias may later be pointed elsewhere.
	k := b.conn
	k.KeyID = aws.ToString(md.KeyId)
	signer, err := b.km.CreateSigner(&apiv1.CreateSignerRequest{SigningKey: "awskms:key-id=" + k.KeyID})
	if err != nil {
		return nil, awsErr("create signer", err)
	}
	return &Key{URI: k, Signer: signer}, nil
}

func (b *Backend) attestAWS(ctx context.Context, u URI) (Attestation, crypto.PublicKey, error) {
	if u.KeyID == "" {
		return Attestation{}, nil, errors.New("awskms uri names no key")
	}
	md, err := b.aws.describe(ctx, u.KeyID)
	if err != nil {
		return Attestation{}, nil, err
	}
	out, err := b.aws.kms.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: md.KeyId})
	if err != nil {
		return Attestation{}, nil, awsErr("GetPublicKey", err)
	}
	pub, err := x509.ParsePKIXPublicKey(out.PublicKey)
	if err != nil {
		return Attestation{}, nil, fmt.Errorf("GetPublicKey: parse: %w", err)
	}
	a := Attestation{
		// KMS offers no call that returns private key material.
		NonExtractable:   true,
		NeverExtractable: md.Origin == types.OriginTypeAwsKms,
		Detail:           fmt.Sprintf("KeyState=%s Origin=%s KeySpec=%s KeyUsage=%s", md.KeyState, md.Origin, md.KeySpec, md.KeyUsage),
	}
	return a, pub, nil
}

// AWS KMS's bounds on the deletion pending window.
const (
	minPendingDays = 7
	maxPendingDays = 30
)

func (b *Backend) destroyAWS(ctx context.Context, u URI, pendingDays int32) (Destruction, error) {
	if u.KeyID == "" {
		return Destruction{}, errors.New("awskms uri names no key")
	}
	if pendingDays < minPendingDays || pendingDays > maxPendingDays {
		return Destruction{}, fmt.Errorf("pending window of %d days: AWS KMS takes %d to %d", pendingDays, minPendingDays, maxPendingDays)
	}
	md, err := b.aws.describe(ctx, u.KeyID)
	if err != nil {
		return Destruction{}, err
	}
	if md.KeyState == types.KeyStatePendingDeletion && md.DeletionDate != nil {
		// Scheduled by an earlier attempt whose record was not written:
		// report that schedule rather than fail.
		d := Destruction{DeletionDate: md.DeletionDate.UTC(), PendingDays: pendingDays}
		if md.PendingDeletionWindowInDays != nil {
			d.PendingDays = *md.PendingDeletionWindowInDays
		}
		return d, nil
	}
	out, err := b.aws.kms.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{
		KeyId:               md.KeyId,
		PendingWindowInDays: aws.Int32(pendingDays),
	})
	if err != nil {
		return Destruction{}, awsErr("ScheduleKeyDeletion", err)
	}
	d := Destruction{PendingDays: pendingDays}
	if out.PendingWindowInDays != nil {
		d.PendingDays = *out.PendingWindowInDays
	}
	if out.DeletionDate == nil {
		return Destruction{}, errors.New("ScheduleKeyDeletion returned no deletion date")
	}
	d.DeletionDate = out.DeletionDate.UTC()
	return d, nil
}
