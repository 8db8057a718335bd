package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

// tamperSeq is the event the single-row tamper cases alter.
const tamperSeq = 17

// chainInfo describes the untampered database the cases start from.
type chainInfo struct {
	head        int64   // last event
	checkpoints []int64 // checkpoint seqs, ascending
	auditKeyID  string
}

// firstCheckpointFrom returns the first checkpoint at or after seq.
func (ci chainInfo) firstCheckpointFrom(t *testing.T, seq int64) int64 {
	t.Helper()
	for _, s := range ci.checkpoints {
		if s >= seq {
			return s
		}
	}
	t.Fatalf("no checkpoint at or after event %d (checkpoints %v)", seq, ci.checkpoints)
	return 0
}

// TestAuditVerifyDetectsTampering edits copies of a real CA database the
// ways an attacker with write access to the file could, and checks that
// `sigil audit verify` fails naming the first broken event (issue 4,
// acceptance: a changed field, a deleted row, two rows swapped, the last N
// rows cut).
func TestAuditVerifyDetectsTampering(t *testing.T) {
	inProcess(t)
	c := initCA(t)
	client := c.httpClient(t)
	// Three serve sessions of 10 certificates, each stopped gracefully, give
	// a checkpoint per shutdown (plus the one `sigil init` signs), so the
	// checkpoint cases have more than one to delete.
	for round := range 3 {
		p := startServe(t, c)
		for i := range 10 {
			req := api.SignRequest{CSR: newCSR(t, fmt.Sprintf("tamper-%d-%d.example.com", round, i)), Profile: "tls-server"}
			if _, _, err := signOnce(e2eV1(t, client, p, c.adminToken), req); err != nil {
				t.Fatalf("issue certificate: %v", err)
			}
		}
		p.stop(t)
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		if fi, err := os.Stat(c.sqlite(t) + suffix); err == nil {
			t.Logf("after graceful stop %s exists (%d bytes)", filepath.Base(c.sqlite(t)+suffix), fi.Size())
		}
	}

	// The untampered database verifies, and verifying does not change it.
	before := fileHash(t, c.sqlite(t))
	out, errOut, err := runSigil(t, nil, "audit", "verify", "--db", c.sqlite(t), "--ca-file", c.root)
	if err != nil {
		t.Fatalf("sigil audit verify on the untampered database: %v\n%s%s", err, out, errOut)
	}
	t.Logf("untampered: %s", strings.TrimSpace(out))
	if after := fileHash(t, c.sqlite(t)); after != before {
		t.Errorf("sigil audit verify changed the database file: sha256 %x before, %x after", before, after)
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		if fi, err := os.Stat(c.sqlite(t) + suffix); err == nil {
			// SQLite's read-only WAL access may leave these behind; the
			// database itself is unchanged.
			t.Logf("after verify %s exists (%d bytes)", filepath.Base(c.sqlite(t)+suffix), fi.Size())
		}
	}

	info := describeChain(t, c.sqlite(t))
	t.Logf("chain: head %d, checkpoints at %v, audit key %s", info.head, info.checkpoints, info.auditKeyID)
	if info.head < tamperSeq+6 {
		t.Fatalf("chain too short for the cases: head %d", info.head)
	}
	if n := len(info.checkpoints); n < 3 || info.checkpoints[n-1] != info.head {
		t.Fatalf("want at least 3 checkpoints, the last at the head %d; have %v", info.head, info.checkpoints)
	}
	cps := info.checkpoints
	prevCP := cps[len(cps)-2] // the checkpoint before the shutdown one

	tests := []struct {
		name   string
		tamper func(t *testing.T, db *sql.DB, path string)
		// want is the event the error must name; wantMsg, if set, is
		// required in stderr instead.
		want    func(t *testing.T) int64
		wantMsg string
	}{
		{
			name:   "changed actor",
			tamper: exec1(1, "UPDATE audit_events SET actor = 'mallory' WHERE seq = ?", tamperSeq),
			want:   at(tamperSeq),
		},
		{
			name:   "changed detail",
			tamper: exec1(1, `UPDATE audit_events SET detail = json_set(detail, '$.tampered', 'yes') WHERE seq = ?`, tamperSeq),
			want:   at(tamperSeq),
		},
		{
			name:   "changed time",
			tamper: exec1(1, "UPDATE audit_events SET time = time + 1 WHERE seq = ?", tamperSeq),
			want:   at(tamperSeq),
		},
		{
			name:   "changed action",
			tamper: exec1(1, "UPDATE audit_events SET action = 'token.revoked' WHERE seq = ?", tamperSeq),
			want:   at(tamperSeq),
		},
		{
			name:   "changed target",
			tamper: exec1(1, "UPDATE audit_events SET target = 'someone-else' WHERE seq = ?", tamperSeq),
			want:   at(tamperSeq),
		},
		{
			name:   "changed stored hash",
			tamper: exec1(1, "UPDATE audit_events SET hash = randomblob(32) WHERE seq = ?", tamperSeq),
			want:   at(tamperSeq),
		},
		{
			name:   "deleted row",
			tamper: exec1(1, "DELETE FROM audit_events WHERE seq = ?", tamperSeq),
			want:   at(tamperSeq),
		},
		{
			name:   "deleted first row",
			tamper: exec1(1, "DELETE FROM audit_events WHERE seq = 1"),
			want:   at(1),
		},
		{
			name: "swapped rows, seq kept",
			tamper: func(t *testing.T, db *sql.DB, _ string) {
				swapRows(t, db, tamperSeq, tamperSeq+1)
			},
			want: at(tamperSeq),
		},
		{
			// Each row keeps its content and takes the other's seq.
			name: "swapped rows, seq swapped too",
			tamper: execAll(3,
				sqlStmt("UPDATE audit_events SET seq = -1 WHERE seq = ?", tamperSeq),
				sqlStmt("UPDATE audit_events SET seq = ? WHERE seq = ?", tamperSeq, tamperSeq+1),
				sqlStmt("UPDATE audit_events SET seq = ? WHERE seq = -1", tamperSeq+1)),
			want: at(tamperSeq),
		},
		{
			name:   "last 5 rows cut",
			tamper: exec1(5, "DELETE FROM audit_events WHERE seq > ?", info.head-5),
			want:   at(info.head - 4), // the first missing event
		},
		{
			// Consistent links everywhere; only the signed checkpoints
			// still commit to the old hashes.
			name: "rewritten chain",
			tamper: func(t *testing.T, db *sql.DB, path string) {
				rewriteChain(t, db, path, tamperSeq, func(e *audit.Event) { e.Actor = "mallory" })
			},
			want: func(t *testing.T) int64 { return info.firstCheckpointFrom(t, tamperSeq) },
		},
		{
			// Delete the events after the previous checkpoint's head
			// and the shutdown checkpoint that covered them.
			name: "cut back to the previous checkpoint, head checkpoint deleted",
			tamper: execAll(-1,
				sqlStmt("DELETE FROM audit_events WHERE seq > ?", prevCP),
				sqlStmt("DELETE FROM audit_checkpoints WHERE seq > ?", prevCP)),
			// Not detectable offline; asserted below as a known limit.
			want: nil,
		},
		{
			// A checkpoint beyond the cut survives: truncation is proven.
			name: "tail cut, later checkpoints deleted but one past the cut kept",
			tamper: execAll(-1,
				sqlStmt("DELETE FROM audit_events WHERE seq > ?", prevCP-3),
				sqlStmt("DELETE FROM audit_checkpoints WHERE seq > ?", prevCP)),
			want: at(prevCP - 2),
		},
		{
			name:    "substituted audit key, checkpoints re-signed",
			tamper:  substituteAuditKey(info.auditKeyID, false, nil),
			wantMsg: "audit key " + info.auditKeyID + " does not match its certificate",
		},
		{
			name:    "substituted audit key and certificate, checkpoints re-signed",
			tamper:  substituteAuditKey(info.auditKeyID, true, nil),
			wantMsg: "audit key " + info.auditKeyID + " is not certified by the given root",
		},
		{
			// What an attacker wants: alter an event, relink the chain and
			// re-sign every checkpoint with a key of their own.
			name: "rewritten chain with substituted audit key",
			tamper: substituteAuditKey(info.auditKeyID, false, func(t *testing.T, db *sql.DB, path string) {
				rewriteChain(t, db, path, tamperSeq, func(e *audit.Event) { e.Actor = "mallory" })
			}),
			wantMsg: "audit key " + info.auditKeyID + " does not match its certificate",
		},
		{
			name:    "second audit key added, checkpoints re-signed by it",
			tamper:  addAuditKey,
			wantMsg: "has no certificate",
		},
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
			if tc.want == nil && tc.wantMsg == "" {
				// Known limit: document, never assert a pass.
				if err == nil {
					t.Logf("KNOWN LIMIT: verify cannot detect this offline (no checkpoint beyond the cut remains): %s", strings.TrimSpace(out))
				} else {
					t.Logf("detected: %s", strings.TrimSpace(errOut))
				}
				return
			}
			var ee exitCoder
			if !errors.As(err, &ee) || ee.ExitCode() == 0 {
				t.Fatalf("sigil audit verify on a tampered database: err %v, want a non-zero exit\nstdout: %s\nstderr: %s", err, out, errOut)
			}
			want := tc.wantMsg
			if tc.want != nil {
				want = fmt.Sprintf("audit chain broken at event %d:", tc.want(t))
			}
			if !strings.Contains(errOut, want) {
				t.Errorf("stderr does not contain %q:\n%s", want, errOut)
			}
			t.Logf("exit %d: %s", ee.ExitCode(), strings.TrimSpace(errOut))
		})
	}

	// Without --ca-file the key comes from the database itself, so a
	// substituted key goes unnoticed: the CLI says so on stderr.
	t.Run("substituted audit key without --ca-file", func(t *testing.T) {
		path := copyDB(t, c.sqlite(t))
		db := openRW(t, path)
		substituteAuditKey(info.auditKeyID, true, nil)(t, db, path)
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		_, errOut, err := runSigil(t, nil, "audit", "verify", "--db", path)
		if err == nil {
			if !strings.Contains(errOut, "--ca-file") {
				t.Errorf("verify without --ca-file passed a re-keyed database without pointing at --ca-file: %s", errOut)
			}
			t.Logf("KNOWN LIMIT: without --ca-file a substituted audit key is trusted; stderr: %s", strings.TrimSpace(errOut))
		} else {
			t.Logf("detected: %s", strings.TrimSpace(errOut))
		}
	})

	// init always signs a checkpoint, so a log stripped of every checkpoint
	// is itself evidence of tampering.
	stripped := []struct {
		name   string
		tamper func(t *testing.T, db *sql.DB, path string)
	}{
		{"every checkpoint deleted", exec1(-1, "DELETE FROM audit_checkpoints")},
		{"tail cut and every checkpoint deleted", execAll(-1,
			sqlStmt("DELETE FROM audit_events WHERE seq > ?", info.head-5),
			sqlStmt("DELETE FROM audit_checkpoints"))},
	}
	for _, tc := range stripped {
		t.Run("stripped/"+tc.name, func(t *testing.T) {
			path := copyDB(t, c.sqlite(t))
			db := openRW(t, path)
			tc.tamper(t, db, path)
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			_, errOut, err := runSigil(t, nil, "audit", "verify", "--db", path, "--ca-file", c.root)
			if err == nil || !strings.Contains(errOut, "no signed checkpoint") {
				t.Errorf("verify of a log without checkpoints: err %v, stderr %q; want a failure naming the missing checkpoints", err, errOut)
			}
		})
	}

	// Further limits of verifying one database file offline, documented.
	limits := []struct {
		name   string
		tamper func(t *testing.T, db *sql.DB, path string)
	}{
		{"forged event appended after the last checkpoint", appendForged},
	}
	for _, tc := range limits {
		t.Run("limit/"+tc.name, func(t *testing.T) {
			path := copyDB(t, c.sqlite(t))
			db := openRW(t, path)
			tc.tamper(t, db, path)
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			out, errOut, err := runSigil(t, nil, "audit", "verify", "--db", path, "--ca-file", c.root)
			if err == nil {
				t.Logf("KNOWN LIMIT: not detectable offline from one database file: %s", strings.TrimSpace(out))
			} else {
				t.Logf("detected: %s", strings.TrimSpace(errOut))
			}
		})
	}

	if after := fileHash(t, c.sqlite(t)); after != before {
		t.Errorf("the original database changed during the test: sha256 %x before, %x after", before, after)
	}
}

// at returns a want function naming seq.
func at(seq int64) func(*testing.T) int64 {
	return func(*testing.T) int64 { return seq }
}

// stmt is one SQL statement with its arguments.
type stmt struct {
	q    string
	args []any
}

func sqlStmt(q string, args ...any) stmt { return stmt{q, args} }

// execAll returns a tamper function that runs stmts in one transaction. If
// rows is not negative the statements must affect that many rows in all.
func execAll(rows int64, stmts ...stmt) func(*testing.T, *sql.DB, string) {
	return func(t *testing.T, db *sql.DB, _ string) {
		t.Helper()
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		var affected int64
		for _, st := range stmts {
			res, err := tx.Exec(st.q, st.args...)
			if err != nil {
				t.Fatalf("%s: %v", st.q, err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				t.Fatal(err)
			}
			affected += n
		}
		if rows >= 0 && affected != rows {
			t.Fatalf("tampering affected %d rows, want %d", affected, rows)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
}

// exec1 returns a tamper function running one statement that must affect rows rows.
func exec1(rows int64, q string, args ...any) func(*testing.T, *sql.DB, string) {
	return execAll(rows, sqlStmt(q, args...))
}

// swapRows exchanges every column but seq between events a and b.
func swapRows(t *testing.T, db *sql.DB, a, b int64) {
	t.Helper()
	type row struct {
		time                          int64
		actor, action, target, detail string
		prevHash, hash                []byte
	}
	read := func(seq int64) row {
		var r row
		if err := db.QueryRow("SELECT time, actor, action, target, detail, prev_hash, hash FROM audit_events WHERE seq = ?", seq).
			Scan(&r.time, &r.actor, &r.action, &r.target, &r.detail, &r.prevHash, &r.hash); err != nil {
			t.Fatal(err)
		}
		return r
	}
	ra, rb := read(a), read(b)
	const q = "UPDATE audit_events SET time = ?, actor = ?, action = ?, target = ?, detail = ?, prev_hash = ?, hash = ? WHERE seq = ?"
	execAll(2,
		sqlStmt(q, rb.time, rb.actor, rb.action, rb.target, rb.detail, rb.prevHash, rb.hash, a),
		sqlStmt(q, ra.time, ra.actor, ra.action, ra.target, ra.detail, ra.prevHash, ra.hash, b))(t, db, "")
}

// rewriteChain applies mutate to event from and recomputes the prev_hash and
// hash of it and every later event, so that every link is consistent.
func rewriteChain(t *testing.T, db *sql.DB, path string, from int64, mutate func(*audit.Event)) {
	t.Helper()
	events := readEvents(t, path)
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	prev := audit.GenesisHash()
	for i := range events {
		e := &events[i]
		if e.Seq < from {
			prev = e.Hash
			continue
		}
		if e.Seq == from {
			mutate(e)
		}
		e.PrevHash = prev
		e.Hash = audit.ComputeHash(prev, e)
		prev = e.Hash
		detail := "{}"
		if len(e.Detail) > 0 {
			b, err := json.Marshal(e.Detail)
			if err != nil {
				t.Fatal(err)
			}
			detail = string(b)
		}
		if _, err := tx.Exec(`UPDATE audit_events SET time = ?, actor = ?, action = ?, target = ?, detail = ?,
			prev_hash = ?, hash = ? WHERE seq = ?`, e.Time.UnixNano(), e.Actor, e.Action, e.Target, detail,
			e.PrevHash, e.Hash, e.Seq); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	// The rewritten chain must be internally consistent, or the case would
	// test nothing more than "changed actor".
	if _, err := audit.VerifyAll(readEvents(t, path), nil, nil); err != nil {
		t.Fatalf("rewritten chain is not self-consistent: %v", err)
	}
}

// readEvents reads every event through the store, in seq order.
func readEvents(t *testing.T, path string) []audit.Event {
	t.Helper()
	st, err := store.OpenReadOnly(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var events []audit.Event
	if err := st.ScanAudit(context.Background(), func(e audit.Event) error {
		events = append(events, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return events
}

// substituteAuditKey returns a tamper function that runs before (if set),
// then replaces the audit key's public key with a fresh Ed25519 key and
// re-signs every checkpoint with it at the head it states (recomputed from
// the chain as it now is). With newCert the key's certificate setting is
// replaced by a self-signed one for the new key, as a careful attacker would.
func substituteAuditKey(keyID string, newCert bool, before func(*testing.T, *sql.DB, string)) func(*testing.T, *sql.DB, string) {
	return func(t *testing.T, db *sql.DB, path string) {
		t.Helper()
		if before != nil {
			before(t, db, path)
		}
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		exec1(1, "UPDATE keys SET public_key = ? WHERE id = ? AND purpose = 'audit'", der, keyID)(t, db, path)
		if newCert {
			exec1(1, "UPDATE settings SET value = ? WHERE name = ?", selfSigned(t, priv), ca.AuditCertSetting+keyID)(t, db, path)
		}
		resignCheckpoints(t, db, path, keyID, keyID, priv)
	}
}

// addAuditKey inserts a second audit key (with no certificate) and re-signs
// every checkpoint with it.
func addAuditKey(t *testing.T, db *sql.DB, path string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	exec1(1, `INSERT INTO keys (id, purpose, algorithm, backend, state, public_key, created)
		VALUES ('mallory-audit', 'audit', 'ed25519', 'software', 'active', ?, ?)`, der, time.Now().UnixNano())(t, db, path)
	resignCheckpoints(t, db, path, "", "mallory-audit", priv)
}

// resignCheckpoints signs every checkpoint (or those of fromKey, if set) with
// signer as keyID, committing to the hash the chain now has at its seq.
func resignCheckpoints(t *testing.T, db *sql.DB, path, fromKey, keyID string, signer ed25519.PrivateKey) {
	t.Helper()
	hashes := map[int64][]byte{}
	for _, e := range readEvents(t, path) {
		hashes[e.Seq] = e.Hash
	}
	rows, err := db.Query("SELECT seq, time, key_id FROM audit_checkpoints ORDER BY seq")
	if err != nil {
		t.Fatal(err)
	}
	type cp struct {
		seq, time int64
		key       string
	}
	var cps []cp
	for rows.Next() {
		var c cp
		if err := rows.Scan(&c.seq, &c.time, &c.key); err != nil {
			t.Fatal(err)
		}
		cps = append(cps, c)
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range cps {
		if fromKey != "" && c.key != fromKey {
			continue
		}
		h, ok := hashes[c.seq]
		if !ok {
			t.Fatalf("checkpoint at %d past the chain", c.seq)
		}
		signed, err := audit.SignCheckpoint(rand.Reader, signer, keyID, audit.Head{Seq: c.seq, Hash: h}, time.Unix(0, c.time))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec("UPDATE audit_checkpoints SET hash = ?, key_id = ?, signature = ? WHERE seq = ?",
			signed.Hash, signed.KeyID, signed.Signature, c.seq); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n == 0 {
		t.Fatal("no checkpoint re-signed")
	}
}

// selfSigned returns a self-signed certificate for key, standing in for the
// audit key certificate the root issued.
func selfSigned(t *testing.T, key ed25519.PrivateKey) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "Sigil CA audit signer"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// appendForged appends a correctly linked event after the head, as the
// server itself would.
func appendForged(t *testing.T, db *sql.DB, path string) {
	t.Helper()
	events := readEvents(t, path)
	last := events[len(events)-1]
	e := audit.Event{Time: last.Time.Add(time.Second), Actor: "system", Action: "token.revoked", Target: "forged"}
	audit.Next(audit.Head{Seq: last.Seq, Hash: last.Hash}, &e)
	exec1(1, "INSERT INTO audit_events (seq, time, actor, action, target, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, '{}', ?, ?)",
		e.Seq, e.Time.UnixNano(), e.Actor, e.Action, e.Target, e.PrevHash, e.Hash)(t, db, path)
}

// describeChain reads the head, the checkpoints and the audit key id.
func describeChain(t *testing.T, path string) chainInfo {
	t.Helper()
	ctx := context.Background()
	st, err := store.OpenReadOnly(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var ci chainInfo
	head, err := st.AuditHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ci.head = head.Seq
	cps, err := st.Checkpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cps {
		ci.checkpoints = append(ci.checkpoints, c.Seq)
	}
	keys, err := st.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.Purpose == "audit" {
			if ci.auditKeyID != "" {
				t.Fatalf("more than one audit key: %s, %s", ci.auditKeyID, k.ID)
			}
			ci.auditKeyID = k.ID
		}
	}
	if ci.auditKeyID == "" {
		t.Fatal("no audit key")
	}
	events := readEvents(t, path)
	for _, e := range events[tamperSeq-1 : tamperSeq+1] {
		t.Logf("event %d: %s %s by %s", e.Seq, e.Action, e.Target, e.Actor)
	}
	return ci
}

// copyDB copies the database (and its -wal and -shm files, if present) into
// a fresh directory and returns the copy's path.
func copyDB(t *testing.T, path string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(path))
	for _, suffix := range []string{"", "-wal", "-shm"} {
		in, err := os.Open(path + suffix)
		if errors.Is(err, os.ErrNotExist) && suffix != "" {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.Create(dst + suffix)
		if err != nil {
			in.Close()
			t.Fatal(err)
		}
		_, err = io.Copy(out, in)
		in.Close()
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// openRW opens a database copy for tampering with the plain SQLite driver.
func openRW(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	return db
}

func fileHash(t *testing.T, path string) [sha256.Size]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(data)
}
