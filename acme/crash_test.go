package acme

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	xacme "golang.org/x/crypto/acme"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/internal/testca"
	"github.com/sigil-ca/sigil/internal/testclock"
	"github.com/sigil-ca/sigil/store"
)

// crashDirEnv tells the test binary it is the child of TestCrashBetweenSignAndOrder.
const crashDirEnv = "SIGIL_ACME_CRASH_DIR"

// TestCrashBetweenSignAndOrder kills a process (SIGKILL) after it signed a
// finalized order's certificate and before that certificate committed with
// the order turning valid, then reopens the SQLite file it left: the order
// is processing with no certificate, nothing half-written is in the chain,
// and after a restart the order recovers and issues exactly one certificate.
func TestCrashBetweenSignAndOrder(t *testing.T) {
	if os.Getenv(crashDirEnv) != "" {
		t.Skip("this is the child process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChildFinalize$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the child was not killed at the hook (%v):\n%s", err, out)
	}
	orderID, err := os.ReadFile(filepath.Join(dir, "order"))
	if err != nil {
		t.Fatalf("the child wrote no order id: %v\n%s", err, out)
	}

	// The file as the killed process left it, before anything recovers it.
	ctx := context.Background()
	clk := testclock.New()
	st, err := store.Open(ctx, store.Config{Path: filepath.Join(dir, "sigil.db"), Clock: clk})
	if err != nil {
		t.Fatalf("reopen the killed process's database: %v", err)
	}
	defer st.Close()
	o, err := st.ACMEOrder(ctx, string(orderID))
	if err != nil {
		t.Fatal(err)
	}
	if o.Status != "processing" || o.CertSerial != "" {
		t.Errorf("after the kill the order is %s with certificate %q, want processing with none", o.Status, o.CertSerial)
	}
	certs, _, err := st.Certificates(ctx, store.CertFilter{Channel: ca.ChannelACME, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 0 {
		t.Errorf("after the kill %d ACME certificates are recorded, want none (signed, never committed)", len(certs))
	}
	for _, action := range []string{"cert.issued", "acme.order.finalized"} {
		events, _, err := st.AuditEvents(ctx, store.AuditFilter{Action: action, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range events {
			if e.Action == "acme.order.finalized" || e.Detail["channel"] == ca.ChannelACME {
				t.Errorf("after the kill the chain holds %s %s from the dead finalize", e.Action, e.Target)
			}
		}
	}

	// Restart: the same file, the keys unlocked again, the clock a minute on.
	ks, err := keystore.Unlock(ctx, st, clk, []byte(testca.Passphrase))
	if err != nil {
		t.Fatal(err)
	}
	cp, err := ca.UnlockCheckpointer(ctx, st, ks, clk)
	if err != nil {
		t.Fatal(err)
	}
	st.SetCheckpointer(cp)
	auth, err := ca.New(ctx, ca.Config{Profiles: ca.DefaultProfiles(), BaseURL: testca.BaseURL, Clock: clk,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, st, ks)
	if err != nil {
		t.Fatal(err)
	}
	root, err := x509.ParseCertificate(auth.Root().Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.VerifyAudit(ctx, st, root); err != nil {
		t.Errorf("audit chain after the kill: %v", err)
	}
	if err := st.Checkpoint(ctx); err != nil { // as sigil serve does on start
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	ts := newTestServerOn(t, Config{Clock: clk}, st, auth)
	c := crashChildClient(t, dir, ts)
	orderURL := ts.srv.URL + ts.acme.Prefix() + "/order/" + string(orderID)
	got, err := c.GetOrder(ctx, orderURL)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != xacme.StatusProcessing {
		t.Errorf("a minute after the kill the order is %s, want processing", got.Status)
	}
	clk.Advance(staleProcessing)
	c = freshNonces(c)
	if got, err = c.GetOrder(ctx, orderURL); err != nil || got.Status != xacme.StatusReady {
		t.Fatalf("past staleProcessing the order is %+v (%v), want ready", got, err)
	}
	ders, _, err := c.CreateOrderCert(ctx, got.FinalizeURL, ipCSR(t, "127.0.0.1"), false)
	if err != nil {
		t.Fatalf("finalize after the restart: %v", err)
	}
	if len(ders) == 0 {
		t.Fatal("finalize after the restart returned no certificate")
	}
	certs, _, err = st.Certificates(ctx, store.CertFilter{Channel: ca.ChannelACME, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	o, err = st.ACMEOrder(ctx, string(orderID))
	if err != nil || o.Status != "valid" || len(certs) != 1 || o.CertSerial != certs[0].Serial {
		t.Errorf("after the restart: order %+v (%v) with %d certificates, want valid with its one certificate", o, err, len(certs))
	}
	if _, err := ca.VerifyAudit(ctx, st, root); err != nil {
		t.Errorf("audit chain after the recovered finalize: %v", err)
	}
}

// TestCrashChildFinalize is the child of TestCrashBetweenSignAndOrder: it
// builds a CA in the parent's directory, readies an order and finalizes it,
// killing itself once the certificate is signed.
func TestCrashChildFinalize(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("run by TestCrashBetweenSignAndOrder")
	}
	h := startHTTP01(t)
	clk := testclock.New()
	st, auth := testAuthorityAt(t, filepath.Join(dir, "sigil.db"), ca.DefaultProfiles(), clk)
	if err := st.Checkpoint(context.Background()); err != nil { // as sigil serve does on start
		t.Fatal(err)
	}
	ts := newTestServerOn(t, Config{Clock: clk}, st, auth, testValidation{httpPort: h.port})
	e := newNegEnv(t, ts)
	keyDER, err := x509.MarshalECPrivateKey(e.key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "account.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	o := e.readyOrder(t, h)
	if err := os.WriteFile(filepath.Join(dir, "order"), []byte(lastSegment(o.URI)), 0o600); err != nil {
		t.Fatal(err)
	}
	ts.acme.signedHook = func() { syscall.Kill(os.Getpid(), syscall.SIGKILL) }
	_, _, err = e.c.CreateOrderCert(context.Background(), o.FinalizeURL, ipCSR(t, "127.0.0.1"), false)
	t.Fatalf("the finalize returned (%v): the process should have died at the hook", err)
}

// crashChildClient is an ACME client on ts holding the child's account key.
func crashChildClient(t *testing.T, dir string, ts *testServer) *xacme.Client {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "account.pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		t.Fatal("account.pem holds no PEM block")
	}
	key, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	c := &xacme.Client{Key: key, DirectoryURL: ts.dir, HTTPClient: ts.srv.Client()}
	acct, err := c.GetReg(context.Background(), "")
	if err != nil {
		t.Fatalf("the child's account on the restarted server: %v", err)
	}
	if !strings.HasPrefix(acct.URI, ts.srv.URL) {
		t.Fatalf("account URL %s not on %s", acct.URI, ts.srv.URL)
	}
	return c
}
