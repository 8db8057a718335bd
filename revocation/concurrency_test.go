package revocation

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/store"
)

// pausingStore stops a CRL generation in the middle of its row scan, with
// its read transaction open and the publisher's generation lock held, until
// released.
type pausingStore struct {
	*store.SQLite
	paused  chan struct{}
	release chan struct{}
}

func (s *pausingStore) RevokedCertificates(ctx context.Context, issuerID string, shard int, since time.Time, fn func(store.RevokedEntry) error) error {
	first := true
	return s.SQLite.RevokedCertificates(ctx, issuerID, shard, since, func(r store.RevokedEntry) error {
		if first {
			first = false
			close(s.paused)
			<-s.release
		}
		return fn(r)
	})
}

// TestOCSPAnswersDuringCRLAndWrites: while a CRL generation is stopped in
// the middle of its scan, the OCSP responder keeps answering GET and POST
// over a real listener, and the store keeps taking issuances and
// revocations, which OCSP reports as soon as each is committed.
func TestOCSPAnswersDuringCRLAndWrites(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	inter := e.auth.Intermediate().Cert
	var good, revoked []*x509.Certificate
	for i := range 6 {
		c := e.issue(fmt.Sprintf("before-%d.example.com", i))
		if i%2 == 0 {
			good = append(good, c)
			continue
		}
		if _, err := e.auth.Revoke(ctx, ca.RevokeRequest{Serial: ca.SerialString(c.SerialNumber), Reason: ca.ReasonSuperseded, Actor: "test"}); err != nil {
			t.Fatal(err)
		}
		revoked = append(revoked, c)
	}
	r := e.responder(OCSPConfig{})
	srv := httptest.NewServer(r.Handler())
	defer srv.Close()

	ps := &pausingStore{SQLite: e.st, paused: make(chan struct{}), release: make(chan struct{})}
	pub, err := NewPublisher(CRLConfig{Clock: e.clk, Logger: discard()}, e.auth.CRL(), ps)
	if err != nil {
		t.Fatal(err)
	}
	crlDone := make(chan error, 1)
	go func() {
		_, err := pub.PublishShard(ctx, e.auth.Intermediate().ID, 0)
		crlDone <- err
	}()
	<-ps.paused
	released := false
	defer func() {
		if !released {
			close(ps.release)
		}
	}()

	// Write load: issue and revoke, each a durable commit, while reading.
	const writes = 30
	writesDone := make(chan struct{})
	var writeErr error
	var written []*x509.Certificate
	go func() {
		defer close(writesDone)
		for i := range writes {
			c, err := issueCert(ctx, e.auth, fmt.Sprintf("load-%d.example.com", i))
			if err == nil {
				_, err = e.auth.Revoke(ctx, ca.RevokeRequest{Serial: ca.SerialString(c.SerialNumber), Reason: ca.ReasonKeyCompromise, Actor: "test"})
			}
			if err != nil {
				writeErr = err
				return
			}
			written = append(written, c)
		}
	}()
	client := srv.Client()
	answered := 0
	finished := func() bool {
		select {
		case <-writesDone:
			return true
		default:
			return false
		}
	}
	// Read for as long as the writes go on, and at least 20 rounds.
	for round := 0; round < 20 || !finished(); round++ {
		for _, c := range good {
			if st := ocspStatus(t, client, srv.URL, c, inter, round%2 == 0); st.Status != ocsp.Good {
				t.Fatalf("good certificate answered %d", st.Status)
			}
			answered++
		}
		for _, c := range revoked {
			if st := ocspStatus(t, client, srv.URL, c, inter, round%2 == 1); st.Status != ocsp.Revoked || st.RevocationReason != ocsp.Superseded {
				t.Fatalf("revoked certificate answered %d reason %d", st.Status, st.RevocationReason)
			}
			answered++
		}
	}
	<-writesDone
	if writeErr != nil {
		t.Fatalf("write load during the CRL scan: %v", writeErr)
	}
	for _, c := range written {
		if st := ocspStatus(t, client, srv.URL, c, inter, false); st.Status != ocsp.Revoked || st.RevocationReason != ocsp.KeyCompromise {
			t.Fatalf("certificate revoked under load answered %d reason %d", st.Status, st.RevocationReason)
		}
	}
	select {
	case err := <-crlDone:
		t.Fatalf("the CRL generation was not held in its scan (returned %v)", err)
	default:
	}
	t.Logf("%d OCSP answers and %d issuances+revocations while the CRL scan was held", answered, writes)

	released = true
	close(ps.release)
	if err := <-crlDone; err != nil {
		t.Fatalf("CRL generation: %v", err)
	}
	rec, _ := pub.Current(e.auth.Intermediate().ID, 0)
	crl, err := x509.ParseRevocationList(rec.DER)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(crl.RevokedCertificateEntries); n < len(revoked) {
		t.Errorf("CRL lists %d entries, want at least the %d revoked before it began", n, len(revoked))
	}
}

// ocspStatus asks srv about cert by GET or POST and returns the verified answer.
func ocspStatus(t *testing.T, client *http.Client, url string, cert, issuer *x509.Certificate, byGET bool) *ocsp.Response {
	t.Helper()
	req := request(t, cert, issuer, crypto.SHA256)
	var resp *http.Response
	var err error
	if byGET {
		resp, err = client.Get(url + "/ocsp/" + base64.StdEncoding.EncodeToString(req))
	} else {
		resp, err = client.Post(url+"/ocsp", "application/ocsp-request", bytes.NewReader(req))
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("OCSP %d: %v", resp.StatusCode, err)
	}
	parsed, err := ocsp.ParseResponseForCert(body, cert, issuer)
	if err != nil {
		t.Fatalf("OCSP response: %v", err)
	}
	return parsed
}

// issueCert issues a certificate for cn, returning errors instead of failing
// the test, for use off the test goroutine.
func issueCert(ctx context.Context, a *ca.Authority, cn string) (*x509.Certificate, error) {
	key, err := keystore.Generate(keystore.ECDSAP256)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: []string{cn}}, key)
	if err != nil {
		return nil, err
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, err
	}
	iss, err := a.Sign(ctx, ca.SignRequest{CSR: csr, Profile: "tls-server", Requester: "test", Channel: ca.ChannelAPI})
	if err != nil {
		return nil, err
	}
	if len(iss.Chain) == 0 {
		return nil, errors.New("empty chain")
	}
	return x509.ParseCertificate(iss.Chain[0])
}

// BenchmarkOCSPGetUnderLoad is BenchmarkOCSPGetHTTP while, on the same two
// cores, one writer issues and revokes certificates without pause (each a
// durable commit, each revocation re-signing OCSP responses) and the CRL is
// regenerated over and over. It reports the writers' pace beside the
// responder's.
//
//	go test ./revocation/ -run '^$' -bench OCSPGetUnderLoad -benchtime 200000x
func BenchmarkOCSPGetUnderLoad(b *testing.B) {
	e := newEnv(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	paths := benchOCSPPaths(b, e)
	r := e.responder(OCSPConfig{})
	pub, err := NewPublisher(CRLConfig{Clock: e.clk, Logger: discard()}, e.auth.CRL(), e.st)
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	var writes, crls int
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			c, err := issueCert(ctx, e.auth, "load.example.com")
			if err == nil {
				_, err = e.auth.Revoke(ctx, ca.RevokeRequest{Serial: ca.SerialString(c.SerialNumber), Reason: ca.ReasonSuperseded, Actor: "bench"})
			}
			if err != nil && ctx.Err() == nil {
				b.Error(err)
				return
			}
			writes++
		}
	}()
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			if _, err := pub.PublishShard(ctx, e.auth.Intermediate().ID, 0); err != nil && ctx.Err() == nil {
				b.Error(err)
				return
			}
			crls++
		}
	}()
	start := time.Now()
	benchOCSPGets(b, r, paths)
	elapsed := time.Since(start)
	cancel()
	wg.Wait()
	b.ReportMetric(float64(writes)/elapsed.Seconds(), "issue+revoke/s")
	b.ReportMetric(float64(crls)/elapsed.Seconds(), "CRLs/s")
}
