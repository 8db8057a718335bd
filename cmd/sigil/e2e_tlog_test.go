package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigil-ca/sigil/api"
)

// TestCLITransparencyLog drives the log end to end against sigil serve: an
// auditor saves a tree head, more certificates are issued, a newer head is
// signed, and the auditor proves inclusion of random certificates and the
// consistency of the old head with the new one, every check done by the
// CLI against the root alone; a doctored head file is refused.
func TestCLITransparencyLog(t *testing.T) {
	t.Parallel()
	inProcess(t)
	c := initCA(t)
	p := startServe(t, c)
	dir := t.TempDir()
	out, _ := e2eRun(t, e2eAdmin(p, c, "token", "create", "--role", "auditor")...)
	auditor := strings.TrimSpace(out)
	as := func(args ...string) []string { return e2eWithToken(p, c, auditor, args...) }

	var serials []string
	issue := func(prefix string, n int) {
		for i := range n {
			serials = append(serials, e2eSerial(e2eIssueSAN(t, p, c, "tls-server", fmt.Sprintf("%s%d.example", prefix, i))[0]))
		}
		e2eRun(t, e2eAdmin(p, c, "jobs", "run", "log-sign", "--wait")...)
	}
	readHead := func(path string) api.TreeHead {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var h api.TreeHead
		if err := json.Unmarshal(data, &h); err != nil {
			t.Fatal(err)
		}
		return h
	}

	issue("old", 3)
	oldPath := filepath.Join(dir, "old.json")
	e2eRun(t, as("audit", "sth", "--out", oldPath)...)
	old := readHead(oldPath)
	issue("new", 5)
	newPath := filepath.Join(dir, "new.json")
	out, _ = e2eRun(t, as("audit", "sth", "--out", newPath, "--format", "json")...)
	cur := readHead(newPath)
	if cur.TreeSize != old.TreeSize+5 {
		t.Fatalf("new head has %d leaves, old %d; want 5 more", cur.TreeSize, old.TreeSize)
	}
	var printed api.TreeHead
	if err := json.Unmarshal([]byte(out), &printed); err != nil || printed.TreeSize != cur.TreeSize {
		t.Errorf("audit sth --format json printed %q (%v)", out, err)
	}

	for _, i := range rand.Perm(len(serials))[:4] {
		out, _ := e2eRun(t, as("audit", "prove", serials[i], "--format", "json")...)
		var res ProveResult
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("audit prove --format json: %v\n%s", err, out)
		}
		if !res.Verified || res.Serial != serials[i] || res.TreeSize != cur.TreeSize {
			t.Errorf("audit prove %s = %+v", serials[i], res)
		}
	}
	out, _ = e2eRun(t, as("audit", "prove", serials[0])...)
	if !strings.Contains(out, "included (verified)") {
		t.Errorf("audit prove table: %s", out)
	}

	out, _ = e2eRun(t, as("audit", "consistency", oldPath, newPath)...)
	if !strings.Contains(out, "consistent (verified)") {
		t.Errorf("audit consistency: %s", out)
	}
	// The same size twice is trivially consistent; reversed is refused.
	e2eRun(t, as("audit", "consistency", newPath, newPath)...)
	if msg := e2eFail(t, as("audit", "consistency", newPath, oldPath)...); !strings.Contains(msg, "give the older head first") {
		t.Errorf("reversed heads: %s", msg)
	}

	// A head whose root was changed no longer carries a valid signature;
	// one re-signed by anyone but the root's audit signer is refused too.
	doctored := old
	doctored.RootHash = append([]byte{}, old.RootHash...)
	doctored.RootHash[0] ^= 1
	data, _ := json.Marshal(doctored)
	badPath := e2eWriteFile(t, dir, "doctored.json", data)
	if msg := e2eFail(t, as("audit", "consistency", badPath, newPath)...); !strings.Contains(msg, "invalid signature") {
		t.Errorf("doctored head: %s", msg)
	}

	// Issued after the latest head: not provable until the next one.
	late := e2eSerial(e2eIssueSAN(t, p, c, "tls-server", "late.example")[0])
	if msg := e2eFail(t, as("audit", "prove", late)...); !strings.Contains(msg, "not in the tree of size") {
		t.Errorf("prove before signing: %s", msg)
	}
	if msg := e2eFail(t, as("audit", "prove", "00ff")...); !strings.Contains(msg, "not_found") {
		t.Errorf("prove unknown serial: %s", msg)
	}

	// Offline: audit verify also recomputes the log from the database.
	out, _ = e2eRun(t, "audit", "verify", c.verifyArgs()[0], c.verifyArgs()[1], "--ca-file", c.root)
	if !strings.Contains(out, fmt.Sprintf("transparency log OK: %d leaves", cur.TreeSize+1)) {
		t.Errorf("audit verify: %s", out)
	}
}
