package api_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/store"
)

// benchEpoch is when the fixture's first certificate was issued; one is
// issued every second after it, each valid for 90 days.
var benchEpoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// benchMigrationsKey hashes the store's migrations: a fixture built by an
// older schema is rebuilt, never opened (and migrated) in place.
func benchMigrationsKey(b *testing.B) string {
	b.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "store", "migrations", "*.sql"))
	if err != nil || len(files) == 0 {
		b.Fatalf("store migrations: %v (%d files)", err, len(files))
	}
	slices.Sort(files)
	h := sha256.New()
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(h, "%s %d\n", filepath.Base(f), len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// exportFixture returns the path of a SQLite database holding an
// initialized CA and n certificates issued by its intermediate. Building
// 1,000,000 takes minutes, so the file is kept under os.TempDir(), keyed by
// the migrations and n, and reused by later runs; delete
// $TMPDIR/sigil-bench-export-* to rebuild.
func exportFixture(b *testing.B, n int) string {
	b.Helper()
	path := filepath.Join(os.TempDir(), fmt.Sprintf("sigil-bench-export-%s-%d.db", benchMigrationsKey(b), n))
	if _, err := os.Stat(path); err == nil {
		return path
	}
	b.Logf("building %s (%d certificates); later runs reuse it", path, n)
	start := time.Now()
	building := path + ".building-" + strconv.Itoa(os.Getpid())
	if err := buildExportFixture(building, n); err != nil {
		os.Remove(building)
		os.Remove(building + "-wal")
		os.Remove(building + "-shm")
		b.Fatalf("build fixture: %v", err)
	}
	// A clean close leaves no WAL behind; move one along if it did.
	if _, err := os.Stat(building + "-wal"); err == nil {
		if err := os.Rename(building+"-wal", path+"-wal"); err != nil {
			b.Fatal(err)
		}
	}
	os.Remove(building + "-shm")
	if err := os.Rename(building, path); err != nil {
		b.Fatal(err)
	}
	b.Logf("built in %v", time.Since(start).Round(time.Second))
	return path
}

func buildExportFixture(path string, n int) error {
	ctx := context.Background()
	clk := clockwork.NewFakeClockAt(benchEpoch.Add(-time.Hour))
	st, err := store.Open(ctx, store.Config{Path: path, Clock: clk})
	if err != nil {
		return err
	}
	defer st.Close()
	params, err := keystore.FastKDFParams(rand.Reader)
	if err != nil {
		return err
	}
	if _, err := ca.Init(ctx, st, ca.InitConfig{
		Name: "Bench CA", RootAlgorithm: keystore.ECDSAP256, IntermediateAlgorithm: keystore.ECDSAP256,
		BaseURL: "http://ca.test:8080", Passphrase: []byte("bench passphrase"), KDF: params,
		Clock: clk,
	}); err != nil {
		return err
	}
	issuers, err := st.Issuers(ctx)
	if err != nil {
		return err
	}
	var issuerID string
	for _, is := range issuers {
		if is.Kind == "intermediate" {
			issuerID = is.ID
		}
	}
	if issuerID == "" {
		return fmt.Errorf("no intermediate among %d issuers", len(issuers))
	}
	// A few real leaf certificates, reused as the rows' DER: signing a
	// million would dominate the build and measures nothing here.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	type leaf struct{ der, spki []byte }
	var leaves []leaf
	for i := range 16 {
		name := fmt.Sprintf("leaf-%d.bench.example", i)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 1)), Subject: pkix.Name{CommonName: name},
			DNSNames: []string{name, "www." + name}, NotBefore: benchEpoch, NotAfter: benchEpoch.AddDate(0, 0, 90),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			OCSPServer: []string{"http://ca.test:8080/ocsp"}, CRLDistributionPoints: []string{"http://ca.test:8080/crl/1.crl"}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			return err
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return err
		}
		leaves = append(leaves, leaf{der, store.SPKIHash(cert.RawSubjectPublicKeyInfo)})
	}
	const batch = 5000
	for lo := 0; lo < n; lo += batch {
		err := st.WithTx(ctx, func(tx store.Tx) error {
			for i := lo; i < min(lo+batch, n); i++ {
				l := leaves[i%len(leaves)]
				created := benchEpoch.Add(time.Duration(i) * time.Second)
				name := fmt.Sprintf("host-%d.bench.example", i)
				c := store.CertRecord{IssuerID: issuerID, Serial: fmt.Sprintf("%016x%016x", uint64(i)*0x9e3779b97f4a7c15, i),
					Subject: "CN=" + name, SANs: []string{name, "www." + name}, NotBefore: created.Add(-time.Minute),
					NotAfter: created.AddDate(0, 0, 90), KeyAlgorithm: "ECDSA-P256", Profile: "tls-server",
					Requester: "token:bench" + strconv.Itoa(i%7), Channel: "api", DER: l.der, Created: created, SPKIHash: l.spki}
				if err := tx.InsertCertificate(&c); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("insert rows %d..: %w", lo, err)
		}
	}
	return nil
}
