package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/keybackend"
	"github.com/sigil-ca/sigil/internal/testkms"
	"github.com/sigil-ca/sigil/store"
	"github.com/sigil-ca/sigil/store/postgres/pgtest"
)

// e2eCheckKEKRecord checks c's active KEK record (with the server
// stopped): backend awskms, params naming the key by its resolved id, and
// neither the AWS profile's dummy secret nor a passphrase in it. It reads
// the SQLite file, so it skips the rest of a test on PostgreSQL: call it
// last.
func e2eCheckKEKRecord(t *testing.T, c *caDir) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{Path: c.sqlite(t), Clock: clockwork.NewFakeClock()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rec, err := st.ActiveKEK(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var params struct {
		URI string `json:"uri"`
	}
	if err := json.Unmarshal(rec.Params, &params); err != nil {
		t.Fatalf("kek params %q: %v", rec.Params, err)
	}
	if rec.ID != "kek-1" || rec.Backend != "awskms" || !strings.HasPrefix(params.URI, "awskms:key-id=") || len(rec.Check) == 0 {
		t.Errorf("kek record %s backend %s params %s check %d bytes", rec.ID, rec.Backend, rec.Params, len(rec.Check))
	}
	for _, secret := range []string{testkms.SecretAccessKey, testPassphrase} {
		if bytes.Contains(rec.Params, []byte(secret)) {
			t.Errorf("kek params hold a secret: %s", rec.Params)
		}
	}
}

// initCAWithKEK runs sigil init in process with --kek-uri and no
// passphrase at all (no file, no environment, no terminal), with extra
// flags, and returns the CA directory (its passphraseFile empty).
func initCAWithKEK(t *testing.T, kekURI string, extra ...string) *caDir {
	t.Helper()
	caPath := filepath.Join(t.TempDir(), "ca")
	var dsn string
	if testStorePostgres() {
		dsn = pgtest.NewDatabase(t)
		extra = append(slices.Clone(extra), "--store", dsn)
	}
	args := append([]string{"init", "--dir", caPath, "--kek-uri", kekURI,
		"--https-addr", freeAddr(t), "--http-addr", freeAddr(t)}, extra...)
	out, errOut, err := initInProcess(t, nil, args...)
	if err != nil {
		t.Fatalf("sigil init --kek-uri: %v\n%s%s", err, out, errOut)
	}
	c := &caDir{dir: caPath, config: filepath.Join(caPath, "sigil.yaml"), root: filepath.Join(caPath, "root.pem"),
		db: filepath.Join(caPath, "sigil.db"), store: dsn}
	c.adminToken = e2eTokenRe.FindString(out)
	if c.adminToken == "" {
		t.Fatalf("sigil init printed no admin token:\n%s", out)
	}
	return c
}

// serveFails starts sigil serve in process on c as startServeInProcess
// does, expecting it to fail, and returns the error's text.
func serveFails(t *testing.T, c *caDir) string {
	t.Helper()
	o := &serveOptions{}
	cmd := newServeCmd(o)
	if err := cmd.ParseFlags([]string{"--config", c.config, "--https-addr", freeAddr(t), "--http-addr", freeAddr(t)}); err != nil {
		t.Fatal(err)
	}
	cmd.SetErr(&lockedBuffer{})
	cmd.SetContext(context.Background())
	s, err := o.start(cmd)
	if err == nil {
		_ = s.shutdown(context.Background())
		t.Fatal("sigil serve started")
	}
	return err.Error()
}

// TestE2EKEKInKMS creates a CA whose KEK is a key in a real local-kms
// (sigil init --kek-uri, no passphrase), serves it with no passphrase,
// issues, restarts and issues again. With local-kms stopped, serve fails
// with an error naming the KEK and the unreachable backend and writes no
// audit event; once local-kms is back it starts again.
func TestE2EKEKInKMS(t *testing.T) {
	inProcess(t)
	t.Parallel()
	srv := testkms.Start(t)
	uri := "awskms:profile=" + testkms.Profile + ";credentials-file=" + srv.ConfigFile(t)
	c := initCAWithKEK(t, uri)
	if c.passphraseFile != "" {
		t.Fatal("the CA has a passphrase file")
	}

	p := startServe(t, c)
	first := e2eIssueSAN(t, p, c, "tls-server", "one.localhost")
	e2eVerifyChain(t, c, first, "one.localhost")
	_, keys := e2eListKeys(t, p, c)
	var wrapped int
	for _, k := range keys {
		if k.Backend == "passphrase" {
			if k.KEK != "kek-1" {
				t.Errorf("key %s wrapped under %q", k.ID, k.KEK)
			}
			wrapped++
		}
	}
	if wrapped < 3 { // root, intermediate, audit
		t.Errorf("%d keys wrapped under the KMS KEK: %+v", wrapped, keys)
	}
	p.stop(t)

	// Restart: the data keys open through KMS again.
	p = startServe(t, c)
	second := e2eIssueSAN(t, p, c, "tls-server", "two.localhost")
	e2eVerifyChain(t, c, second, "two.localhost")
	p.stop(t)

	before := e2eAuditVerify(t, c)
	srv.Stop()
	msg := serveFails(t, c)
	for _, want := range []string{"unlock keys", "kek-1", "key backend unavailable"} {
		if !strings.Contains(msg, want) {
			t.Errorf("serve with KMS stopped: %q lacks %q", msg, want)
		}
	}
	if after := e2eAuditVerify(t, c); after != before {
		t.Errorf("a refused start wrote to the audit log: %+v, then %+v", before, after)
	}

	srv.Restart(t)
	p = startServe(t, c)
	e2eIssueSAN(t, p, c, "tls-server", "three.localhost")
	p.stop(t)
	e2eCheckKEKRecord(t, c)
}

// TestE2EKEKInKMSRefusals: sigil init --kek-uri with local-kms stopped
// fails clearly and leaves no CA behind; a passphrase file beside --kek-uri
// and a KEK URI of another backend are refused.
func TestE2EKEKInKMSRefusals(t *testing.T) {
	inProcess(t)
	t.Parallel()
	srv := testkms.Start(t)
	uri := "awskms:profile=" + testkms.Profile + ";credentials-file=" + srv.ConfigFile(t)
	srv.Stop()
	dir := filepath.Join(t.TempDir(), "ca")
	_, errOut, err := initInProcess(t, nil, "init", "--dir", dir, "--kek-uri", uri,
		"--https-addr", freeAddr(t), "--http-addr", freeAddr(t))
	if err == nil {
		t.Fatal("sigil init with local-kms stopped succeeded")
	}
	if line := e2eOneErrorLine(t, errOut); !strings.Contains(line, "--kek-uri") || !strings.Contains(line, "key backend unavailable") {
		t.Errorf("init with KMS stopped: %q", line)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*")); len(m) != 0 {
		t.Errorf("a failed init left %v", m)
	}

	pf := e2eWriteFile(t, t.TempDir(), "pass", []byte(testPassphrase))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--kek-uri", uri, "--passphrase-file", pf}, "takes no passphrase"},
		{[]string{"--kek-uri", "pkcs11:module-path=/m.so;token=t;object=k", "--passphrase-file", pf}, "takes no passphrase"},
		{[]string{"--kek-uri", "pkcs11:module-path=/m.so;token=t;object=k"}, "not supported yet"},
	} {
		d := filepath.Join(t.TempDir(), "ca")
		_, errOut, err := initInProcess(t, nil, append([]string{"init", "--dir", d}, tc.args...)...)
		if err == nil {
			t.Errorf("init %v succeeded", tc.args)
			continue
		}
		if line := e2eOneErrorLine(t, errOut); !strings.Contains(line, tc.want) {
			t.Errorf("init %v: %q, want %q", tc.args, line, tc.want)
		}
	}
}

// e2eKEKsOfKeys returns the KEK ids the data keys of c are wrapped under.
func e2eKEKsOfKeys(t *testing.T, p *serverProc, c *caDir) map[string]int {
	t.Helper()
	_, keys := e2eListKeys(t, p, c)
	out := map[string]int{}
	for _, k := range keys {
		if k.Backend == "passphrase" && k.State != "destroyed" {
			out[k.KEK]++
		}
	}
	return out
}

// TestE2ERewrapToKMS moves a passphrase CA's data keys to a KEK in a real
// local-kms with sigil keys rewrap --to (a wrong current passphrase first
// refused), restarts sigil serve with no passphrase and issues, then moves
// them back under a new passphrase and restarts with that.
func TestE2ERewrapToKMS(t *testing.T) {
	inProcess(t)
	t.Parallel()
	srv := testkms.Start(t)
	uri := "awskms:profile=" + testkms.Profile + ";credentials-file=" + srv.ConfigFile(t)
	c := initCA(t)
	p := startServe(t, c)
	e2eIssueSAN(t, p, c, "tls-server", "before.localhost")

	wrong := e2eWriteFile(t, t.TempDir(), "wrong", []byte("not the passphrase at all"))
	_, errOut, err := runSigilInProcess(t, nil, e2eAdmin(p, c, "keys", "rewrap", "--to", uri, "--passphrase-file", wrong)...)
	if err == nil || !strings.Contains(errOut, "passphrase is wrong") {
		t.Fatalf("rewrap with a wrong passphrase: %v\n%s", err, errOut)
	}
	if got := e2eKEKsOfKeys(t, p, c); len(got) != 1 || got["kek-1"] == 0 {
		t.Fatalf("after a refused rewrap keys are under %v", got)
	}

	out, _ := e2eRun(t, e2eAdmin(p, c, "keys", "rewrap", "--to", uri, "--passphrase-file", c.passphraseFile)...)
	if !strings.Contains(out, "under kek-2") {
		t.Errorf("rewrap --to awskms: %q", out)
	}
	if got := e2eKEKsOfKeys(t, p, c); len(got) != 1 || got["kek-2"] < 3 {
		t.Fatalf("after rewrap --to awskms keys are under %v", got)
	}
	if !strings.Contains(p.stderr.String(), "kek rewrap progress") {
		t.Errorf("no progress in the server log:\n%s", p.stderr)
	}
	e2eIssueSAN(t, p, c, "tls-server", "during.localhost")
	p.stop(t)

	noPass := *c
	noPass.passphraseFile = ""
	p = startServe(t, &noPass)
	e2eIssueSAN(t, p, &noPass, "tls-server", "kms.localhost")

	newPass := e2eWriteFile(t, t.TempDir(), "new", []byte("a new passphrase after KMS"))
	out, _ = e2eRun(t, e2eAdmin(p, &noPass, "keys", "rewrap", "--to", "passphrase", "--new-passphrase-file", newPass)...)
	if !strings.Contains(out, "under kek-3") {
		t.Errorf("rewrap --to passphrase: %q", out)
	}
	if got := e2eKEKsOfKeys(t, p, &noPass); len(got) != 1 || got["kek-3"] < 3 {
		t.Fatalf("after rewrap --to passphrase keys are under %v", got)
	}
	p.stop(t)
	// kek-2's KMS key is no longer needed: local-kms stopped changes nothing.
	srv.Stop()
	back := *c
	back.passphraseFile = newPass
	p = startServe(t, &back)
	e2eIssueSAN(t, p, &back, "tls-server", "after.localhost")
}

// TestE2EKeysShow: with the KEK and the intermediate in a real local-kms,
// sigil keys show reports the intermediate as held in awskms, non
// extractable, its fingerprint (the intermediate certificate's key)
// attested live; a key in the database as such; with local-kms stopped the
// attestation fails visibly while the record is still shown; an unknown id
// is not found.
func TestE2EKeysShow(t *testing.T) {
	inProcess(t)
	t.Parallel()
	srv := testkms.Start(t)
	uri := "awskms:profile=" + testkms.Profile + ";credentials-file=" + srv.ConfigFile(t)
	c := initCAWithKEK(t, uri, "--intermediate-key-uri", uri)
	p := startServe(t, c)
	chain := e2eIssueSAN(t, p, c, "tls-server", "show.localhost")
	wantFP, err := keybackend.Fingerprint(chain[1].PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	_, keys := e2eListKeys(t, p, c)
	ids := map[string]string{}
	for _, k := range keys {
		ids[k.Purpose] = k.ID
	}
	show := func(id string) ca.KeyDetail {
		t.Helper()
		out, _ := e2eRun(t, e2eAdmin(p, c, "keys", "show", id, "--format", "json")...)
		var d ca.KeyDetail
		if err := json.Unmarshal([]byte(out), &d); err != nil {
			t.Fatalf("keys show --format json: %v\n%s", err, out)
		}
		return d
	}
	d := show(ids["intermediate"])
	if d.Backend != "awskms" || !strings.HasPrefix(d.URI, "awskms:key-id=") || !d.NonExtractable || !d.Attested ||
		d.AttestationError != "" || d.PublicKeySHA256 != wantFP {
		t.Errorf("intermediate: %+v, want awskms, attested, non-extractable, fingerprint %s", d, wantFP)
	}
	out, _ := e2eRun(t, e2eAdmin(p, c, "keys", "show", ids["intermediate"])...)
	for _, want := range []string{"NON-EXTRACTABLE", "true", wantFP, "yes: the backend holds the recorded public key now"} {
		if !strings.Contains(out, want) {
			t.Errorf("keys show table lacks %q:\n%s", want, out)
		}
	}
	if d := show(ids["root"]); d.Backend != "passphrase" || d.NonExtractable || d.Attested || !strings.Contains(d.Where, "kek-1") {
		t.Errorf("root: %+v", d)
	}
	if line := e2eFail(t, e2eAdmin(p, c, "keys", "show", "intermediate-0000000000000000")...); !strings.Contains(line, "no key") {
		t.Errorf("unknown key: %q", line)
	}

	srv.Stop()
	d = show(ids["intermediate"])
	if d.Attested || !strings.Contains(d.AttestationError, "key backend unavailable") || d.PublicKeySHA256 != wantFP {
		t.Errorf("intermediate with KMS stopped: %+v", d)
	}
}
