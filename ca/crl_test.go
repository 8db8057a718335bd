package ca

import (
	"context"
	"crypto/x509"
	"io"
	"log/slog"
	"math/big"
	"strconv"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/sigil-ca/sigil/ca/keystore"
)

func TestCRLShard(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		serial int64
		shards int
		want   int
	}{
		{12345, 0, 0}, {12345, 1, 0}, {12345, 2, 2}, {12344, 2, 1}, {15, 16, 16}, {16, 16, 1}, {0x10001, 4, 2},
	} {
		if got := CRLShard(big.NewInt(tc.serial), tc.shards); got != tc.want {
			t.Errorf("CRLShard(%d, %d) = %d, want %d", tc.serial, tc.shards, got, tc.want)
		}
	}
}

// TestShardedIssuance issues with CRLShards 4: every certificate records a
// shard in 1..4, its CDP names that shard's CRL, and it passes the lint gate.
func TestShardedIssuance(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tc := newTestCA(t, keystore.ECDSAP256, keystore.ECDSAP256)
	a, err := New(ctx, Config{Profiles: DefaultProfiles(), BaseURL: testBaseURL + "/", Clock: tc.clk, CRLShards: 4,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, tc.st, tc.init.Keystore)
	if err != nil {
		t.Fatal(err)
	}
	if a.CRL().CRLShards() != 4 || tc.CRL().CRLShards() != 0 {
		t.Errorf("CRLShards = %d and %d, want 4 and 0", a.CRL().CRLShards(), tc.CRL().CRLShards())
	}
	id := a.Intermediate().ID
	seen := map[int]bool{}
	for i := range 24 {
		iss, err := a.Sign(ctx, SignRequest{CSR: newCSR(t, mustKey(t, keystore.ECDSAP256), "", "s"+strconv.Itoa(i)+".example"),
			Profile: "tls-server", Channel: ChannelAPI})
		if err != nil {
			t.Fatalf("Sign: %v", err)
		}
		leaf, err := x509.ParseCertificate(iss.Record.DER)
		if err != nil {
			t.Fatal(err)
		}
		shard := iss.Record.CRLShard
		if want := CRLShard(leaf.SerialNumber, 4); shard != want || shard < 1 || shard > 4 {
			t.Errorf("record shard %d, want %d in 1..4", shard, want)
		}
		want := testBaseURL + "/crl/" + id + "/" + strconv.Itoa(shard) + ".crl"
		if len(leaf.CRLDistributionPoints) != 1 || leaf.CRLDistributionPoints[0] != want || a.CRL().CRLURL(id, shard) != want {
			t.Errorf("CDP %q, want [%s]", leaf.CRLDistributionPoints, want)
		}
		stored, err := tc.st.Certificate(ctx, iss.Record.Serial)
		if err != nil || stored.CRLShard != shard {
			t.Errorf("stored shard %d (%v), want %d", stored.CRLShard, err, shard)
		}
		seen[shard] = true
	}
	if len(seen) < 3 {
		t.Errorf("24 certificates landed in shards %v only", seen)
	}
	if _, err := New(ctx, Config{Profiles: DefaultProfiles(), BaseURL: testBaseURL, Clock: tc.clk, CRLShards: -1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, tc.st, tc.init.Keystore); err == nil {
		t.Errorf("New accepted CRLShards -1")
	}
}

func TestSignCRL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, alg := range []keystore.Algorithm{keystore.ECDSAP256, keystore.RSA2048, keystore.Ed25519} {
		t.Run(string(alg), func(t *testing.T) {
			t.Parallel()
			tc := newTestCA(t, keystore.ECDSAP256, alg)
			inter := tc.Intermediate()
			now := tc.clk.Now()
			tmpl := &x509.RevocationList{Number: big.NewInt(7), ThisUpdate: now, NextUpdate: now.Add(24 * time.Hour),
				RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: big.NewInt(99), RevocationTime: now, ReasonCode: 1}}}
			der, err := tc.signCRL(ctx, inter.ID, tmpl)
			if err != nil {
				t.Fatalf("signCRL: %v", err)
			}
			crl, err := x509.ParseRevocationList(der)
			if err != nil {
				t.Fatal(err)
			}
			if err := crl.CheckSignatureFrom(inter.Cert); err != nil {
				t.Errorf("signature: %v", err)
			}
			// The same TBS through signTBSCertList signs again.
			der2, err := tc.signTBSCertList(ctx, inter.ID, crl.RawTBSRevocationList)
			if err != nil {
				t.Fatalf("signTBSCertList: %v", err)
			}
			crl2, err := x509.ParseRevocationList(der2)
			if err != nil {
				t.Fatal(err)
			}
			if err := crl2.CheckSignatureFrom(inter.Cert); err != nil || crl2.Number.Int64() != 7 {
				t.Errorf("re-signed CRL: number %v, signature %v", crl2.Number, err)
			}
			algID, err := tc.CRL().CRLSignatureAlgorithm(inter.ID)
			if err != nil || len(algID) == 0 {
				t.Errorf("CRLSignatureAlgorithm = %x, %v", algID, err)
			}
			// CRLSignature's value, assembled by the caller, verifies too.
			sig, err := tc.CRL().CRLSignature(ctx, inter.ID, crl.RawTBSRevocationList)
			if err != nil {
				t.Fatalf("CRLSignature: %v", err)
			}
			b := cryptobyte.NewBuilder(nil)
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddBytes(crl.RawTBSRevocationList)
				b.AddBytes(algID)
				b.AddASN1BitString(sig)
			})
			if crl3, err := x509.ParseRevocationList(b.BytesOrPanic()); err != nil || crl3.CheckSignatureFrom(inter.Cert) != nil {
				t.Errorf("CRL assembled from CRLSignature does not verify (%v)", err)
			}

			// Refusals: the root (whose key stays wrapped), and anything
			// that is not a v2 TBSCertList of this issuer.
			if _, err := tc.signCRL(ctx, tc.Root().ID, tmpl); KindOf(err) != NotFound {
				t.Errorf("signCRL for the root = %v, want NotFound", err)
			}
			if _, err := tc.signTBSCertList(ctx, tc.Root().ID, crl.RawTBSRevocationList); KindOf(err) != NotFound {
				t.Errorf("signTBSCertList for the root = %v, want NotFound", err)
			}
			if _, err := tc.CRL().CRLSignatureAlgorithm(tc.Root().ID); err == nil {
				t.Errorf("CRLSignatureAlgorithm for the root succeeded")
			}
			for name, tbs := range map[string][]byte{
				"a TBSCertificate": inter.Cert.RawTBSCertificate,
				"garbage":          []byte("not DER"),
				"trailing data":    append(append([]byte{}, crl.RawTBSRevocationList...), 0),
				"the root's CRL":   mustRootTBS(t, tc),
			} {
				if _, err := tc.signTBSCertList(ctx, inter.ID, tbs); KindOf(err) != Malformed {
					t.Errorf("signTBSCertList(%s) = %v, want Malformed", name, err)
				}
				if _, err := tc.CRL().CRLSignature(ctx, inter.ID, tbs); KindOf(err) != Malformed {
					t.Errorf("CRLSignature(%s) = %v, want Malformed", name, err)
				}
			}
		})
	}
}

// mustRootTBS is a TBSCertList naming the root as issuer, signed by a throwaway key.
func mustRootTBS(t *testing.T, tc *testCA) []byte {
	t.Helper()
	k := mustKey(t, keystore.ECDSAP256)
	root := *tc.Root().Cert
	root.PublicKey = k.Public()
	der, err := x509.CreateRevocationList(nil, &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: tc.clk.Now(),
		NextUpdate: tc.clk.Now().Add(time.Hour)}, &root, k)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	return crl.RawTBSRevocationList
}
