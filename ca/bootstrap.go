package ca

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/store"
)

// InitStore is what Init writes through.
type InitStore interface {
	keystore.Store
	Issuers(ctx context.Context) ([]store.IssuerRecord, error)
}

// InitConfig describes a new CA.
type InitConfig struct {
	Name                  string // e.g. "Example Internal CA"
	Organization          string
	RootAlgorithm         keystore.Algorithm
	IntermediateAlgorithm keystore.Algorithm
	RootValidity          time.Duration // default 10 years
	IntermediateValidity  time.Duration // default 5 years
	RootCRLValidity       time.Duration // the root's first CRL; default DefaultRootCRLValidity
	BaseURL               string        // external base URL of the HTTP listener
	Passphrase            []byte
	KDF                   keystore.KDFParams
	Clock                 clockwork.Clock
	// RootKey and IntermediateKey, when set, are keys held in an HSM or KMS
	// (created or found by ca/keybackend), used instead of keys generated in
	// process: their records name the backend and URI, and the algorithm
	// fields above are ignored for them. Backends is then how the returned
	// Keystore opens them again (keystore.Keystore.SetBackends).
	RootKey         *BackendKey
	IntermediateKey *BackendKey
	Backends        keystore.BackendKeys
	// KEK, when set, is a KEK held in a KMS that wraps every data key
	// instead of a passphrase-derived one: Passphrase and KDF are then
	// ignored, and sigil serve needs no passphrase.
	KEK *RemoteKEK
}

// RemoteKEK is a key-encryption key held in a KMS or HSM.
type RemoteKEK struct {
	Backend string // "awskms"
	URI     string // canonical key URI, without any secret
	KEK     keystore.RemoteKEK
}

// BackendKey is a signing key held in an HSM or KMS.
type BackendKey struct {
	Backend string // "pkcs11", "awskms"
	URI     string // canonical key URI, without any secret
	Signer  crypto.Signer
}

// initKey generates the key for purpose in process, or records the
// backend key given for it.
func initKey(ctx context.Context, ks *keystore.Keystore, purpose string, alg keystore.Algorithm, ext *BackendKey) (crypto.Signer, store.KeyRecord, error) {
	if ext == nil {
		return ks.Generate(ctx, purpose, alg)
	}
	if ext.Signer == nil {
		return nil, store.KeyRecord{}, fmt.Errorf("%s key in %s: no signer", purpose, ext.Backend)
	}
	rec, err := ks.BackendKeyRecord(purpose, ext.Backend, ext.URI, ext.Signer.Public())
	if err != nil {
		return nil, store.KeyRecord{}, err
	}
	return ext.Signer, rec, nil
}

// InitResult is what Init created.
type InitResult struct {
	Root         *x509.Certificate
	Intermediate *x509.Certificate
	AdminToken   string // shown once; only its hash is stored
	RootCRL      store.CRLRecord
	Keystore     *keystore.Keystore
	Checkpointer store.Checkpointer
}

// Fingerprint returns the SHA-256 fingerprint of a certificate as colon-separated hex.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

// AuditCertSetting is the settings key under which the audit signer's
// certificate (issued by the root) is stored, suffixed with its key id.
const AuditCertSetting = "audit.cert."

// CheckpointEvery is how many audit events may go unsigned at most.
const CheckpointEvery = 1000

// Init creates the KEK, the root, the intermediate and the audit signing
// key, the root's first CRL (number 1, empty: the root key is at hand now
// and offline afterwards, and the intermediate's CRL distribution point
// names it) and the first admin token, all in one transaction: either the
// CA exists afterwards or nothing was written.
func Init(ctx context.Context, st InitStore, cfg InitConfig) (*InitResult, error) {
	if cfg.Clock == nil {
		return nil, errors.New("init: no clock")
	}
	if cfg.RootValidity == 0 {
		cfg.RootValidity = 10 * 365 * 24 * time.Hour
	}
	if cfg.IntermediateValidity == 0 {
		cfg.IntermediateValidity = 5 * 365 * 24 * time.Hour
	}
	if cfg.IntermediateValidity > cfg.RootValidity {
		return nil, errors.New("init: intermediate validity exceeds root validity")
	}
	if cfg.Name == "" {
		cfg.Name = "Sigil CA"
	}
	rootCRLValidity, err := rootCRLValidity(cfg.RootCRLValidity)
	if err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	issuers, err := st.Issuers(ctx)
	if err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	if len(issuers) > 0 {
		return nil, errors.New("init: this database already holds a CA")
	}
	var ks *keystore.Keystore
	var kekRec store.KEKRecord
	if cfg.KEK != nil {
		ks, kekRec, err = keystore.PrepareRemote(ctx, st, cfg.Clock, cfg.KEK.Backend, cfg.KEK.URI, cfg.KEK.KEK)
	} else {
		ks, kekRec, err = keystore.Prepare(st, cfg.Clock, cfg.Passphrase, cfg.KDF)
	}
	if err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	if cfg.Backends != nil {
		ks.SetBackends(cfg.Backends)
	}
	rootKey, rootRec, err := initKey(ctx, ks, "root", cfg.RootAlgorithm, cfg.RootKey)
	if err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	// Sealed now; after init the root key is unwrapped only when needed.
	defer keystore.Zero(rootKey)
	intKey, intRec, err := initKey(ctx, ks, "intermediate", cfg.IntermediateAlgorithm, cfg.IntermediateKey)
	if err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	auditKey, auditRec, err := ks.Generate(ctx, "audit", keystore.Ed25519)
	if err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	now := cfg.Clock.Now().UTC().Truncate(time.Second)
	base := strings.TrimRight(cfg.BaseURL, "/")
	linter, err := NewLinter()
	if err != nil {
		return nil, err
	}

	rootTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: cfg.Name + " Root", Organization: orgs(cfg.Organization)},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(cfg.RootValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	root, err := createCA(rootTmpl, nil, rootKey, rootKey.Public(), linter)
	if err != nil {
		return nil, fmt.Errorf("init: root: %w", err)
	}
	rootID := IssuerID(root)
	intTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: cfg.Name + " Intermediate", Organization: orgs(cfg.Organization)},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(cfg.IntermediateValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		IssuingCertificateURL: []string{base + "/issuer/" + rootID + ".crt"},
		CRLDistributionPoints: []string{base + "/crl/" + rootID + ".crl"},
	}
	inter, err := createCA(intTmpl, root, rootKey, intKey.Public(), linter)
	if err != nil {
		return nil, fmt.Errorf("init: intermediate: %w", err)
	}
	auditTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: cfg.Name + " Audit Signer", Organization: orgs(cfg.Organization)},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              root.NotAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IssuingCertificateURL: []string{base + "/issuer/" + rootID + ".crt"},
		CRLDistributionPoints: []string{base + "/crl/" + rootID + ".crl"},
	}
	auditCert, err := createCA(auditTmpl, root, rootKey, auditKey.Public(), linter)
	if err != nil {
		return nil, fmt.Errorf("init: audit signer: %w", err)
	}
	intID := IssuerID(inter)
	rootCRL, err := signRootCRL(root, rootID, rootKey, 1, now, rootCRLValidity, nil)
	if err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	// The root signed three certificates and its CRL just now; the other two keys
	// are used from the first serve on.
	rootRec.LastUsed = now
	adminSecret, adminRec, err := NewToken(RoleAdmin, nil, 0, "initial admin token", now)
	if err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	actor := "cli"
	certRec := func(c *x509.Certificate, issuerID, profile string, keyRec store.KeyRecord) store.CertRecord {
		return store.CertRecord{
			IssuerID: issuerID, Serial: SerialString(c.SerialNumber), Subject: c.Subject.String(),
			NotBefore: c.NotBefore, NotAfter: c.NotAfter, KeyAlgorithm: keyRec.Algorithm, Profile: profile,
			Requester: actor, Channel: ChannelInit, DER: c.Raw, Created: now,
		}
	}
	err = st.WithTx(ctx, func(stx store.Tx) error {
		tx := Tx(stx) // recordTx takes the store.Tx for its callers' hooks
		steps := []func() error{
			func() error {
				return appendEvent(tx, now, actor, audit.ActionCAInitialized, rootID, map[string]string{"name": cfg.Name})
			},
			func() error { return tx.InsertKEK(kekRec) },
			func() error {
				return appendEvent(tx, now, actor, audit.ActionKEKCreated, kekRec.ID, map[string]string{"backend": kekRec.Backend})
			},
		}
		for _, kr := range []store.KeyRecord{rootRec, intRec, auditRec} {
			steps = append(steps, func() error { return tx.InsertKey(kr) }, func() error {
				_, err := tx.AppendAudit(keystore.GeneratedEvent(kr, actor))
				return err
			})
		}
		steps = append(steps,
			func() error {
				return tx.InsertIssuer(store.IssuerRecord{ID: rootID, Kind: "root", KeyID: rootRec.ID, CertDER: root.Raw, State: store.KeyActive, Created: now})
			},
			func() error {
				return tx.InsertIssuer(store.IssuerRecord{ID: intID, Kind: "intermediate", ParentID: rootID, KeyID: intRec.ID, CertDER: inter.Raw, State: store.KeyActive, Created: now})
			},
			func() error { return putRootCRL(tx, rootCRL, 0, actor) },
			func() error { return tx.PutSetting(AuditCertSetting+auditRec.ID, auditCert.Raw) },
		)
		for _, c := range []struct {
			cert    *x509.Certificate
			profile string
			key     store.KeyRecord
		}{{root, "root", rootRec}, {inter, "intermediate", intRec}, {auditCert, "audit-signer", auditRec}} {
			steps = append(steps, func() error {
				_, err := recordTx(stx, Issuance{Cert: certRec(c.cert, rootID, c.profile, c.key), Actor: actor, KeyID: c.key.ID}, now)
				return err
			})
		}
		steps = append(steps,
			func() error { return tx.InsertToken(adminRec) },
			func() error { _, err := tx.AppendAudit(TokenAudit(adminRec, actor, now)); return err },
		)
		for _, step := range steps {
			if err := step(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	return &InitResult{
		Root: root, Intermediate: inter, AdminToken: adminSecret, RootCRL: rootCRL, Keystore: ks,
		Checkpointer: NewCheckpointer(auditRec.ID, auditKey, cfg.Clock),
	}, nil
}

func orgs(o string) []string {
	if o == "" {
		return nil
	}
	return []string{o}
}

func appendEvent(tx Tx, now time.Time, actor, action, target string, detail map[string]string) error {
	_, err := tx.AppendAudit(audit.Event{Time: now, Actor: actor, Action: action, Target: target, Detail: detail})
	return err
}

// createCA signs a CA-side certificate (root, intermediate, audit signer) and
// lints it; parent nil means self-signed.
func createCA(tmpl, parent *x509.Certificate, signer crypto.Signer, pub crypto.PublicKey, linter *Linter) (*x509.Certificate, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	if tmpl.SubjectKeyId, err = subjectKeyID(pub); err != nil {
		return nil, err
	}
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, err
	}
	if err := linter.Lint(der); err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// NewCheckpointer returns the store hook that signs audit heads and
// transparency log tree heads with the audit key.
func NewCheckpointer(keyID string, signer crypto.Signer, clk clockwork.Clock) store.Checkpointer {
	return store.Checkpointer{
		Every: CheckpointEvery,
		Sign: func(head audit.Head) (audit.Checkpoint, error) {
			return audit.SignCheckpoint(rand.Reader, signer, keyID, head, clk.Now().UTC())
		},
		// Tree heads are signed by the same key: its certificate, which
		// auditors check against the root, already vouches for checkpoints.
		SignTree: func(size uint64, root []byte) (audit.TreeHead, error) {
			return audit.SignTreeHead(rand.Reader, signer, keyID, size, root, clk.Now().UTC())
		},
	}
}

// UnlockCheckpointer unwraps the active audit key for a serving process.
func UnlockCheckpointer(ctx context.Context, keys interface {
	Keys(ctx context.Context) ([]store.KeyRecord, error)
}, ks KeyUnwrapper, clk clockwork.Clock) (store.Checkpointer, error) {
	recs, err := keys.Keys(ctx)
	if err != nil {
		return store.Checkpointer{}, fmt.Errorf("load keys: %w", err)
	}
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].Purpose == "audit" && recs[i].State == store.KeyActive {
			signer, err := ks.Unwrap(ctx, recs[i].ID, "system")
			if err != nil {
				return store.Checkpointer{}, err
			}
			return NewCheckpointer(recs[i].ID, signer, clk), nil
		}
	}
	return store.Checkpointer{}, errors.New("no active audit key")
}
