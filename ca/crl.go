package ca

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/sigil-ca/sigil/store"
)

// MaxCRLShards bounds Config.CRLShards.
const MaxCRLShards = 1024

// CRLShard returns the CRL shard of a certificate with serial when each
// issuer's CRL is split in shards partitions: 0 (the issuer's whole CRL) when
// shards is 0 or 1, otherwise 1 + (the serial as a big-endian unsigned
// integer mod shards). It depends on the serial alone, so anyone holding the
// certificate can recompute it, and random serials spread certificates evenly.
func CRLShard(serial *big.Int, shards int) int {
	if shards <= 1 {
		return 0
	}
	m := new(big.Int).Mod(new(big.Int).Abs(serial), big.NewInt(int64(shards)))
	return int(m.Int64()) + 1
}

// CRLSigner is the authority as the CRL publisher (revocation) uses it:
// the issuers whose CRLs are published and the changes to them and to
// certificate status, the shard layout and URLs, and signatures over
// TBSCertLists it checks first, so that the key signs nothing else.
type CRLSigner struct{ a *Authority }

// CRL returns the authority as the CRL publisher uses it.
func (a *Authority) CRL() *CRLSigner { return &CRLSigner{a: a} }

// ServingIssuers is Authority.ServingIssuers.
func (c *CRLSigner) ServingIssuers() []Issuer { return c.a.ServingIssuers() }

// OnStatusChange is Authority.OnStatusChange.
func (c *CRLSigner) OnStatusChange(fn func(store.CertRecord)) { c.a.OnStatusChange(fn) }

// OnIssuersChange is Authority.OnIssuersChange.
func (c *CRLSigner) OnIssuersChange(fn func(context.Context)) { c.a.OnIssuersChange(fn) }

// CRLShards returns the number of CRL partitions per issuer: 0 when each
// issuer publishes one CRL.
func (c *CRLSigner) CRLShards() int {
	if c.a.cfg.CRLShards <= 1 {
		return 0
	}
	return c.a.cfg.CRLShards
}

// CRLURL returns the URL of issuerID's CRL for shard: BASE/crl/{issuer}.crl
// for shard 0, BASE/crl/{issuer}/{shard}.crl otherwise. Certificates carry it
// as their CRL distribution point and a partitioned CRL as its issuing
// distribution point, byte for byte (RFC 5280 §5.2.5).
func (c *CRLSigner) CRLURL(issuerID string, shard int) string { return c.a.crlURL(issuerID, shard) }

func (a *Authority) crlURL(issuerID string, shard int) string {
	base := strings.TrimRight(a.cfg.BaseURL, "/") + "/crl/" + issuerID
	if shard == 0 {
		return base + ".crl"
	}
	return base + "/" + strconv.Itoa(shard) + ".crl"
}

// crlIssuer returns issuerID if this process holds its key: the active
// intermediate, or one retired by a rotation that still signs CRLs for the
// certificates it issued. The root key is never unwrapped by a serving
// process, so the root's CRL is not signed here.
func (a *Authority) crlIssuer(issuerID string) (*signingIssuer, error) {
	return a.signingFor(issuerID)
}

// CRLSignatureAlgorithm returns the DER AlgorithmIdentifier that a
// TBSCertList for issuerID must carry to be signed by signTBSCertList.
func (c *CRLSigner) CRLSignatureAlgorithm(issuerID string) ([]byte, error) {
	a := c.a
	iss, err := a.crlIssuer(issuerID)
	if err != nil {
		return nil, err
	}
	return bytes.Clone(iss.tbs.algID), nil
}

// signTBSCertList signs a DER TBSCertList (RFC 5280 §5.1.2) with issuerID's
// key and returns the CertificateList. It refuses any other structure: the
// TBS must be a v2 TBSCertList whose signature field is
// CRLSignatureAlgorithm and whose issuer is the issuer's subject, so the key
// never signs a certificate through here. Callers that stream large CRLs
// encode the TBS themselves; others use signCRL.
func (a *Authority) signTBSCertList(ctx context.Context, issuerID string, tbs []byte) ([]byte, error) {
	iss, err := a.checkCRLTBS(ctx, issuerID, tbs)
	if err != nil {
		return nil, err
	}
	der, err := iss.tbs.signTBS(tbs)
	if err != nil {
		return nil, internal("sign crl", err)
	}
	return der, nil
}

// CRLSignature is signTBSCertList without the assembly: it checks tbs the
// same way and returns the signature value alone (the BIT STRING contents
// of a CertificateList whose signatureAlgorithm is CRLSignatureAlgorithm).
// A caller holding a CRL of tens of MiB assembles it in the buffer that
// already holds the TBS instead of having it copied.
func (c *CRLSigner) CRLSignature(ctx context.Context, issuerID string, tbs []byte) ([]byte, error) {
	a := c.a
	iss, err := a.checkCRLTBS(ctx, issuerID, tbs)
	if err != nil {
		return nil, err
	}
	sig, err := iss.tbs.signature(tbs)
	if err != nil {
		return nil, internal("sign crl", err)
	}
	return sig, nil
}

func (a *Authority) checkCRLTBS(ctx context.Context, issuerID string, tbs []byte) (*signingIssuer, error) {
	iss, err := a.crlIssuer(issuerID)
	if err != nil {
		return nil, err
	}
	if err := checkTBSCertList(tbs, iss.tbs.algID, iss.Cert.RawSubject); err != nil {
		return nil, errorf(Malformed, "refusing to sign: %v", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sign crl: %w", err)
	}
	return iss, nil
}

// signCRL signs tmpl (x509.CreateRevocationList semantics: Number and
// ThisUpdate/NextUpdate required; AKI from the issuer) with issuerID's key.
// It holds every entry in memory; use signTBSCertList for very large CRLs.
func (a *Authority) signCRL(ctx context.Context, issuerID string, tmpl *x509.RevocationList) ([]byte, error) {
	iss, err := a.crlIssuer(issuerID)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sign crl: %w", err)
	}
	t := *tmpl
	t.SignatureAlgorithm = iss.tbs.sigAlg
	der, err := x509.CreateRevocationList(rand.Reader, &t, iss.Cert, iss.signer)
	if err != nil {
		return nil, internal("sign crl", err)
	}
	return der, nil
}

// checkTBSCertList checks the head of a TBSCertList: version v2, the
// expected signature algorithm and issuer, and that the whole is one
// well-formed SEQUENCE.
func checkTBSCertList(tbs, algID, issuer []byte) error {
	in := cryptobyte.String(tbs)
	var seq, alg, name cryptobyte.String
	var version int64
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return errors.New("not a DER SEQUENCE")
	}
	if !seq.PeekASN1Tag(cbasn1.INTEGER) || !seq.ReadASN1Integer(&version) || version != 1 {
		return errors.New("not a v2 TBSCertList")
	}
	if !seq.ReadASN1Element(&alg, cbasn1.SEQUENCE) || !bytes.Equal(alg, algID) {
		return errors.New("unexpected signature algorithm")
	}
	if !seq.ReadASN1Element(&name, cbasn1.SEQUENCE) || !bytes.Equal(name, issuer) {
		return errors.New("issuer is not the signing CA's subject")
	}
	return nil
}
