package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/sigil-ca/sigil/ca/audit/witness"
)

// TestAuditVerifyDetectsStateTampering edits records outside the audit
// chain the way an attacker with the database file could, and checks that
// `sigil audit verify --db` compares them with the chain, fails, and names
// the record (issue 15, item 7: a SQL "un-revoke" of a keyCompromise
// certificate passed verification).
func TestAuditVerifyDetectsStateTampering(t *testing.T) {
	inProcess(t)
	c := initCA(t)
	p := startServe(t, c)
	compromised := e2eIssueSAN(t, p, c, "tls-server", "compromised.example")[0]
	good := e2eIssueSAN(t, p, c, "tls-server", "good.example")[0]
	held := e2eIssueSAN(t, p, c, "tls-server", "held.example")[0]
	e2eRun(t, e2eAdmin(p, c, "cert", "revoke", e2eSerial(compromised), "--reason", "keyCompromise")...)
	e2eRun(t, e2eAdmin(p, c, "cert", "revoke", e2eSerial(held), "--reason", "certificateHold")...)
	e2eRun(t, e2eAdmin(p, c, "token", "create", "--role", "issuer", "--profiles", "tls-server")...)
	e2eRun(t, e2eAdmin(p, c, "token", "create", "--role", "auditor")...)
	db := openRW(t, c.sqlite(t))
	var issuerTok, auditorTok, interKey, spki string
	for _, q := range []struct {
		dst   *string
		query string
	}{
		{&issuerTok, "SELECT id FROM tokens WHERE role = 'issuer'"},
		{&auditorTok, "SELECT id FROM tokens WHERE role = 'auditor'"},
		{&interKey, "SELECT key_id FROM issuers WHERE kind = 'intermediate'"},
		{&spki, "SELECT lower(hex(spki_sha256)) FROM blocked_keys"},
	} {
		if err := db.QueryRow(q.query).Scan(q.dst); err != nil {
			t.Fatalf("%s: %v", q.query, err)
		}
	}
	db.Close()
	e2eRun(t, e2eAdmin(p, c, "token", "revoke", auditorTok)...)
	p.stop(t)

	out, errOut, err := runSigil(t, nil, "audit", "verify", "--db", c.sqlite(t), "--ca-file", c.root)
	if err != nil {
		t.Fatalf("verify of the untampered database: %v\n%s%s", err, out, errOut)
	}
	if !strings.Contains(out, "state OK:") {
		t.Errorf("verify of the untampered database did not compare the state with the chain:\n%s", out)
	}
	t.Logf("untampered: %s", strings.TrimSpace(out))

	cs, gs, hs := e2eSerial(compromised), e2eSerial(good), e2eSerial(held)
	tests := []struct {
		name   string
		tamper func(*testing.T, *sql.DB, string)
		want   string
	}{
		{"keyCompromise certificate un-revoked",
			exec1(1, "UPDATE certificates SET revoked_at = 0, revoke_reason = 0 WHERE serial = ?", cs),
			"certificate " + cs + ": revoked (keyCompromise)"},
		{"revocation reason changed",
			exec1(1, "UPDATE certificates SET revoke_reason = 4 WHERE serial = ?", cs),
			"certificate " + cs + ": revocation reason is superseded in its record, keyCompromise"},
		{"revocation time moved",
			exec1(1, "UPDATE certificates SET revoked_at = revoked_at + 86400000000000 WHERE serial = ?", cs),
			"certificate " + cs + ": revoked at"},
		{"hold released outside the CA",
			exec1(1, "UPDATE certificates SET revoked_at = 0, revoke_reason = 0 WHERE serial = ?", hs),
			"certificate " + hs + ": revoked (certificateHold)"},
		{"valid certificate revoked outside the CA",
			exec1(1, "UPDATE certificates SET revoked_at = created, revoke_reason = 1 WHERE serial = ?", gs),
			"certificate " + gs + ": its record says revoked"},
		{"certificate DER replaced, transparency log untouched",
			exec1(1, "UPDATE certificates SET der = (SELECT der FROM certificates WHERE serial = ?) WHERE serial = ?", cs, gs),
			"certificate " + gs + ": its DER is not the one cert.issued"},
		{"certificate row deleted",
			exec1(1, "DELETE FROM certificates WHERE serial = ?", gs),
			"certificate " + gs},
		{"blocked key removed",
			exec1(1, "DELETE FROM blocked_keys"),
			"key " + spki + " blocked by the audit chain is missing"},
		{"key blocked outside the CA",
			exec1(1, "INSERT INTO blocked_keys (spki_sha256, reason, source, actor, created) VALUES (randomblob(32), 'keyCompromise', 'manual', 'x', 1)"),
			"has no key.blocked event"},
		{"token role escalated",
			exec1(1, "UPDATE tokens SET role = 'admin' WHERE id = ?", issuerTok),
			"token " + issuerTok + ": role admin in its record, issuer in the audit chain"},
		{"token profiles widened",
			exec1(1, `UPDATE tokens SET profiles = '["tls-server","tls-client"]' WHERE id = ?`, issuerTok),
			"token " + issuerTok + ": profiles"},
		{"token secret replaced",
			exec1(1, "UPDATE tokens SET secret_hash = randomblob(32) WHERE id = ?", issuerTok),
			"token " + issuerTok + ": its secret hash is not the one"},
		{"revoked token revived",
			exec1(1, "UPDATE tokens SET revoked = 0 WHERE id = ?", auditorTok),
			"token " + auditorTok + ": revoked by the audit chain"},
		{"token inserted outside the CA",
			exec1(1, `INSERT INTO tokens (id, secret_hash, role, profiles, description, created) VALUES ('mallory', randomblob(32), 'admin', '[]', '', 1)`),
			"token mallory has no token.created event"},
		{"key state changed",
			exec1(1, "UPDATE keys SET state = 'retired' WHERE id = ?", interKey),
			"key " + interKey + ": state retired in its record, active in the audit chain"},
		{"public key replaced",
			exec1(1, "UPDATE keys SET public_key = randomblob(91) WHERE id = ?", interKey),
			"key " + interKey + ": its public key is not the one"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := copyDB(t, c.sqlite(t))
			db := openRW(t, path)
			tc.tamper(t, db, path)
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			out, errOut, err := runSigil(t, nil, "audit", "verify", "--db", path, "--ca-file", c.root)
			var ee exitCoder
			if !errors.As(err, &ee) || ee.ExitCode() == 0 {
				t.Fatalf("sigil audit verify passed a tampered database: %v\nstdout: %s\nstderr: %s", err, out, errOut)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr does not name the change (want %q):\n%s", tc.want, errOut)
			}
		})
	}
}

// TestServeRefusesBrokenAuditTail checks that `sigil serve` verifies the
// chain since its newest checkpoint before it appends anything, refuses to
// start on a break, and starts with --allow-broken-audit only, saying so in
// its log and its audit chain (issue 15, item 7).
func TestServeRefusesBrokenAuditTail(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a server; skipped with -short")
	}
	c := initCA(t)
	p := startServe(t, c)
	for i := range 3 {
		e2eIssueSAN(t, p, c, "tls-server", fmt.Sprintf("tail-%d.example", i))
	}
	p.kill() // no final checkpoint: the tail since the last one is unsigned
	info := describeTail(t, c.sqlite(t))
	if info.head <= info.lastCP {
		t.Fatalf("no unsigned tail after kill -9: head %d, last checkpoint %d", info.head, info.lastCP)
	}

	tests := []struct {
		name   string
		tamper func(*testing.T, *sql.DB, string)
		want   string
	}{
		{"event after the last checkpoint altered",
			exec1(1, "UPDATE audit_events SET actor = 'mallory' WHERE seq = ?", info.head),
			fmt.Sprintf("audit chain broken at event %d", info.head)},
		{"event after the last checkpoint deleted",
			exec1(1, "DELETE FROM audit_events WHERE seq = ?", info.lastCP+1),
			fmt.Sprintf("audit chain broken at event %d", info.lastCP+1)},
		{"event signed by the last checkpoint altered",
			exec1(1, "UPDATE audit_events SET target = 'x' WHERE seq = ?", info.lastCP),
			fmt.Sprintf("audit chain broken at event %d", info.lastCP)},
		{"last checkpoint's signature altered",
			exec1(1, "UPDATE audit_checkpoints SET signature = randomblob(64) WHERE seq = ?", info.lastCP),
			"bad signature on the newest checkpoint"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyCADir(t, c)
			db := openRW(t, dir.db)
			tc.tamper(t, db, dir.db)
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			before := describeTail(t, dir.db)
			errOut := serveMustFail(t, dir)
			if !strings.Contains(errOut, "refusing to serve") || !strings.Contains(errOut, tc.want) {
				t.Errorf("serve's error does not name the break (want %q):\n%s", tc.want, errOut)
			}
			// The refusal wrote nothing: no event after the broken tail, no
			// checkpoint over it.
			if got := describeTail(t, dir.db); got != before {
				t.Errorf("refused start changed the chain: head %d, last checkpoint %d; before: %d, %d",
					got.head, got.lastCP, before.head, before.lastCP)
			}

			p := startServe(t, dir, "--allow-broken-audit")
			events := e2eListAudit(t, p, dir, "--action", "audit.broken_accepted")
			p.stop(t)
			if len(events) != 1 || !strings.Contains(events[0].Detail["error"], tc.want) {
				t.Errorf("audit.broken_accepted events = %+v, want one naming %q", events, tc.want)
			}
			if !strings.Contains(p.stderr.String(), "AUDIT CHAIN BROKEN") {
				t.Errorf("--allow-broken-audit started without a loud warning:\n%s", p.stderr)
			}
		})
	}

	// The untampered database, tail unsigned after the crash, starts.
	p = startServe(t, c)
	p.stop(t)
}

// tailInfo is a chain's head and newest checkpoint.
type tailInfo struct{ head, lastCP int64 }

func describeTail(t *testing.T, path string) tailInfo {
	t.Helper()
	db := openRW(t, path)
	defer db.Close()
	var ti tailInfo
	if err := db.QueryRow("SELECT COALESCE(MAX(seq), 0) FROM audit_events").Scan(&ti.head); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow("SELECT COALESCE(MAX(seq), 0) FROM audit_checkpoints").Scan(&ti.lastCP); err != nil {
		t.Fatal(err)
	}
	return ti
}

// copyCADir copies c's directory (config, root, database) so that a case
// can tamper with and serve its own copy.
func copyCADir(t *testing.T, c *caDir) *caDir {
	t.Helper()
	c.sqlite(t) // a copy of a CA on PostgreSQL would share its database
	dir := filepath.Join(t.TempDir(), "ca")
	if err := os.CopyFS(dir, os.DirFS(c.dir)); err != nil {
		t.Fatal(err)
	}
	cp := *c
	cp.dir, cp.config, cp.root, cp.db = dir, filepath.Join(dir, "sigil.yaml"), filepath.Join(dir, "root.pem"), filepath.Join(dir, "sigil.db")
	return &cp
}

// serveMustFail runs `sigil serve` on c and returns its stderr; it fails
// the test if the server is still running after 30 seconds (it started).
func serveMustFail(t *testing.T, c *caDir, extra ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"serve", "--config", c.config, "--passphrase-file", c.passphraseFile,
		"--https-addr", freeAddr(t), "--http-addr", freeAddr(t)}, extra...)
	cmd := exec.CommandContext(ctx, sigilBinary(t), args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("sigil serve started on a broken audit chain (killed after 30s):\n%s", stderr.String())
	}
	if err == nil {
		t.Fatalf("sigil serve exited 0:\n%s", stderr.String())
	}
	return stderr.String()
}

// TestOCSPStoredResponsesChecked tampers with the stored OCSP responses
// while the server is down and checks that none is served as stored: a
// response for another serial, or one whose signature was corrupted, is
// re-signed at start (issue 15, item 7: a corrupted stored response was
// served as it was).
func TestOCSPStoredResponsesChecked(t *testing.T) {
	inProcess(t)
	for _, withIssuer := range []bool{false, true} {
		t.Run(fmt.Sprintf("sign_with_issuer=%v", withIssuer), func(t *testing.T) {
			c := initCA(t)
			c.sqlite(t) // the stored responses are altered in the SQLite file
			if withIssuer {
				// No embedded responder certificate: nothing in the response
				// itself checks its signature.
				e2eSetConfig(t, c, "sign_with_issuer: false", "sign_with_issuer: true")
			}
			p := startServe(t, c)
			a := e2eIssueSAN(t, p, c, "tls-server", "a.example")
			b := e2eIssueSAN(t, p, c, "tls-server", "b.example")
			client := c.httpClient(t)
			for _, chain := range [][]*x509.Certificate{a, b} {
				e2eOCSPGet(t, client, p.httpURL, chain[0], chain[1], crypto.SHA1)
			}
			p.stop(t)
			as, bs := e2eSerial(a[0]), e2eSerial(b[0])

			cases := []struct {
				name   string
				tamper func(*testing.T, *sql.DB, string)
			}{
				{"response of another certificate", exec1(2,
					"UPDATE ocsp_responses SET der = (SELECT o.der FROM ocsp_responses o WHERE o.serial = ? AND o.hash = ocsp_responses.hash) WHERE serial = ?", bs, as)},
				{"signature corrupted", exec1(2,
					"UPDATE ocsp_responses SET der = substr(der, 1, length(der) - 1) || x'00' WHERE serial = ?", as)},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					dir := copyCADir(t, c)
					db := openRW(t, dir.db)
					tc.tamper(t, db, dir.db)
					if err := db.Close(); err != nil {
						t.Fatal(err)
					}
					p := startServe(t, dir)
					for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
						// e2eOCSPGet checks the signature against the issuer
						// and that the response answers for a's serial.
						r, _ := e2eOCSPGet(t, client, p.httpURL, a[0], a[1], h)
						if r.Status != ocsp.Good {
							t.Errorf("%v: status %d, want good", h, r.Status)
						}
					}
					p.stop(t)
				})
			}
		})
	}
}

// TestAuditWitness checks that every checkpoint reaches the configured
// witness (a directory and a URL) and that `sigil audit verify --witness`
// catches a database cut back together with its newest checkpoints, which
// the database alone cannot show (issue 15, item 7).
func TestAuditWitness(t *testing.T) {
	inProcess(t)
	var mu sync.Mutex
	var posted []witness.Record
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var rec witness.Record
		if err := json.Unmarshal(body, &rec); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		posted = append(posted, rec)
		mu.Unlock()
	}))
	defer hook.Close()

	c := initCA(t)
	witnessDir := filepath.Join(t.TempDir(), "witness")
	cfg, err := os.ReadFile(c.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg = append(cfg, fmt.Sprintf("\naudit:\n  witness:\n    dir: %s\n    url: %s\n", witnessDir, hook.URL)...)
	if err := os.WriteFile(c.config, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	// Two sessions: each shutdown signs (and witnesses) a checkpoint.
	for round := range 2 {
		p := startServe(t, c)
		for i := range 3 {
			e2eIssueSAN(t, p, c, "tls-server", fmt.Sprintf("w-%d-%d.example", round, i))
		}
		e2eRun(t, e2eAdmin(p, c, "audit", "sth")...)
		p.stop(t)
	}
	ti := describeTail(t, c.sqlite(t))
	if heads, _ := filepath.Glob(filepath.Join(witnessDir, "tree-head-*.json")); len(heads) == 0 {
		t.Errorf("no signed tree head reached the witness directory")
	}
	if _, err := os.Stat(filepath.Join(witnessDir, fmt.Sprintf("checkpoint-%020d.json", ti.lastCP))); err != nil {
		t.Fatalf("the last checkpoint (%d) is not in the witness directory: %v", ti.lastCP, err)
	}
	mu.Lock()
	found := false
	for _, r := range posted {
		found = found || (r.Type == "checkpoint" && r.Seq == ti.lastCP)
	}
	mu.Unlock()
	if !found {
		t.Errorf("the last checkpoint (%d) was not POSTed to the witness URL; got %+v", ti.lastCP, posted)
	}

	out, errOut, err := runSigil(t, nil, "audit", "verify", "--db", c.sqlite(t), "--ca-file", c.root, "--witness", witnessDir)
	if err != nil || !strings.Contains(out, "witness OK") {
		t.Fatalf("verify --witness of the untampered database: %v\n%s%s", err, out, errOut)
	}

	// Cut the events of the second session together with its checkpoint,
	// and the certificates issued then: consistent, but behind the witness.
	cps := info2Checkpoints(t, c.sqlite(t))
	prev := cps[len(cps)-2]
	path := copyDB(t, c.sqlite(t))
	db := openRW(t, path)
	execAll(-1,
		sqlStmt("DELETE FROM audit_events WHERE seq > ?", prev),
		sqlStmt("DELETE FROM audit_checkpoints WHERE seq > ?", prev))(t, db, path)
	db.Close()
	out, errOut, err = runSigil(t, nil, "audit", "verify", "--db", path, "--ca-file", c.root, "--witness", witnessDir)
	if err == nil {
		t.Fatalf("verify --witness passed a database cut back to event %d:\n%s", prev, out)
	}
	want := fmt.Sprintf("the database is behind its witness: the chain ends at event %d, a checkpoint of event %d", prev, ti.lastCP)
	if !strings.Contains(errOut, want) {
		t.Errorf("stderr does not say the database is behind its witness (want %q):\n%s", want, errOut)
	}
	// serve checks its tail against the witness too, and refuses.
	cut := copyCADir(t, c)
	db = openRW(t, cut.db)
	execAll(-1,
		sqlStmt("DELETE FROM audit_events WHERE seq > ?", prev),
		sqlStmt("DELETE FROM audit_checkpoints WHERE seq > ?", prev))(t, db, cut.db)
	db.Close()
	want = fmt.Sprintf("the database is behind its witness: the chain ends at event %d, a checkpoint of event %d", prev, ti.lastCP)
	if errOut := serveMustFail(t, cut); !strings.Contains(errOut, want) {
		t.Errorf("serve's refusal does not say the database is behind its witness (want %q):\n%s", want, errOut)
	}

	// A forged witness record (bad signature) is an error, not a pass.
	forged := filepath.Join(t.TempDir(), "witness")
	if err := os.CopyFS(forged, os.DirFS(witnessDir)); err != nil {
		t.Fatal(err)
	}
	rec := witness.Record{Type: "checkpoint", Seq: ti.lastCP + 100, Hash: make([]byte, 32), Time: time.Unix(1, 0).UTC(), KeyID: "x", Signature: []byte("x")}
	b, _ := json.Marshal(rec)
	if err := os.WriteFile(filepath.Join(forged, rec.FileName()), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, err := runSigil(t, nil, "audit", "verify", "--db", c.sqlite(t), "--ca-file", c.root, "--witness", forged); err == nil {
		t.Errorf("verify --witness accepted a forged witness record")
	} else {
		t.Logf("forged witness record: %s", strings.TrimSpace(errOut))
	}
}

func info2Checkpoints(t *testing.T, path string) []int64 {
	t.Helper()
	db := openRW(t, path)
	defer db.Close()
	rows, err := db.Query("SELECT seq FROM audit_checkpoints ORDER BY seq")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var s int64
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if len(out) < 2 {
		t.Fatalf("want 2 checkpoints or more, have %v", out)
	}
	return out
}
