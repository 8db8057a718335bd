package ui_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ui"
)

// tamperedProof serves the real log with every inclusion proof altered.
type tamperedProof struct{ ui.LogReader }

func (t tamperedProof) InclusionProof(ctx context.Context, serial string, size uint64) (ca.Inclusion, error) {
	inc, err := t.LogReader.InclusionProof(ctx, serial, size)
	if err == nil && len(inc.Proof) > 0 {
		p := append([]byte(nil), inc.Proof[0]...)
		p[0] ^= 1
		inc.Proof = append([][]byte{p}, inc.Proof[1:]...)
	}
	return inc, err
}

// otherRoot is a self-signed CA certificate that certified nothing of the
// test CA's.
func otherRoot(t *testing.T) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Other Root"},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<33, 0), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCheckedLog(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	root := e.auth.Root().Cert
	checked := func(t *testing.T, r ui.LogReader, root *x509.Certificate) *ui.CheckedLog {
		t.Helper()
		l, err := ui.NewCheckedLog(r, e.st, root)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	live := checked(t, e.auth.Log(), root)
	base, err := e.st.LogSize(ctx) // the hierarchy's own certificates are logged too
	if err != nil {
		t.Fatal(err)
	}

	first := e.issue(t, "first.example")
	got, err := live.InclusionStatus(ctx, first.Serial)
	if err != nil {
		t.Fatal(err)
	}
	if got.Included || got.Verified || !strings.Contains(got.Detail, "no signed tree head yet") {
		t.Errorf("before any head: %+v; want not included, and why", got)
	}

	second := e.issue(t, "second.example")
	sth, signed, err := e.auth.Log().SignTreeHead(ctx, ca.TreeHeadMaxAge)
	if err != nil || !signed {
		t.Fatalf("SignTreeHead = %v, %v", signed, err)
	}
	late := e.issue(t, "late.example") // logged after the head

	for _, c := range []struct {
		name      string
		log       *ui.CheckedLog
		serial    string
		included  bool
		verified  bool
		wantIndex int64
		detail    string
	}{
		{name: "first", log: live, serial: first.Serial, included: true, verified: true, wantIndex: int64(base)},
		{name: "second", log: live, serial: second.Serial, included: true, verified: true, wantIndex: int64(base) + 1},
		{name: "after the head", log: live, serial: late.Serial, detail: "not in the tree of size"},
		{name: "unknown serial", log: live, serial: "00", detail: "no certificate with serial 00 is in the log"},
		{name: "head signer not certified by the root", log: checked(t, e.auth.Log(), otherRoot(t)), serial: first.Serial,
			detail: "the latest tree head does not verify"},
		{name: "altered proof", log: checked(t, tamperedProof{e.auth.Log()}, root), serial: first.Serial, included: true, wantIndex: int64(base),
			detail: "the inclusion proof does not verify"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.log.InclusionStatus(ctx, c.serial)
			if err != nil {
				t.Fatal(err)
			}
			if got.Included != c.included || got.Verified != c.verified {
				t.Errorf("included, verified = %v, %v; want %v, %v (%+v)", got.Included, got.Verified, c.included, c.verified, got)
			}
			if c.included && got.LeafIndex != c.wantIndex {
				t.Errorf("leaf index = %d, want %d", got.LeafIndex, c.wantIndex)
			}
			if got.TreeSize != int64(sth.Size) || sth.Size != base+2 {
				t.Errorf("tree size = %d, want the signed head's %d (%d)", got.TreeSize, sth.Size, base+2)
			}
			if got.RootHash != hex.EncodeToString(sth.RootHash) {
				t.Errorf("root hash = %s, want the signed head's %x", got.RootHash, sth.RootHash)
			}
			if c.detail == "" && got.Detail != "" || !strings.Contains(got.Detail, c.detail) {
				t.Errorf("detail = %q, want %q", got.Detail, c.detail)
			}
		})
	}

	t.Run("verify", func(t *testing.T) {
		v, err := live.VerifyLog(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !v.OK || v.Detail != "" || v.TreeSize != int64(base)+3 || !v.SignedAt.Equal(sth.Time) {
			t.Errorf("VerifyLog = %+v; want OK over %d leaves, signed at %s", v, base+3, sth.Time)
		}
	})
	t.Run("verify against another root", func(t *testing.T) {
		v, err := checked(t, e.auth.Log(), otherRoot(t)).VerifyLog(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if v.OK || v.Detail == "" {
			t.Errorf("VerifyLog with a root that certified no audit key = %+v; want not OK, and why", v)
		}
	})
}

func TestNewCheckedLogRequires(t *testing.T) {
	t.Parallel()
	if _, err := ui.NewCheckedLog(nil, nil, nil); err == nil {
		t.Error("NewCheckedLog without a log, store or root succeeded")
	}
}
