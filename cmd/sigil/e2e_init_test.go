package main

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// ---------------------------------------------------------------------------
// sigil init

func TestCLIInit(t *testing.T) {
	t.Parallel()
	inProcess(t)
	dir := t.TempDir()
	pf := e2eWriteFile(t, dir, "passphrase", []byte(testPassphrase+"\n"))
	caPath := filepath.Join(dir, "ca")
	httpsAddr := freeAddr(t)
	args := []string{"init", "--dir", caPath, "--passphrase-file", pf, "--https-addr", httpsAddr, "--http-addr", freeAddr(t)}
	out, errOut := e2eRun(t, args...)

	t.Run("fingerprint", func(t *testing.T) {
		root := e2eReadRoot(t, &caDir{root: filepath.Join(caPath, "root.pem")})
		if !root.IsCA || root.CheckSignatureFrom(root) != nil {
			t.Errorf("root.pem is not a self-signed CA certificate")
		}
		m := regexp.MustCompile(`SHA-256:\s*([0-9A-Fa-f:]{64,})`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("init printed no SHA-256 fingerprint:\n%s", out)
		}
		sum := sha256.Sum256(root.Raw)
		got := strings.ToLower(strings.ReplaceAll(m[1], ":", ""))
		if want := hex.EncodeToString(sum[:]); got != want {
			t.Errorf("printed fingerprint %s, SHA-256 of root.pem's DER is %s", got, want)
		}
	})

	t.Run("one admin token", func(t *testing.T) {
		toks := e2eTokenRe.FindAllString(out+errOut, -1)
		if len(toks) != 1 {
			t.Fatalf("init printed %d tokens, want exactly 1:\n%s%s", len(toks), out, errOut)
		}
		// The token works, as an admin.
		c := &caDir{dir: caPath, config: filepath.Join(caPath, "sigil.yaml"), root: filepath.Join(caPath, "root.pem"),
			db: filepath.Join(caPath, "sigil.db"), passphraseFile: pf, adminToken: toks[0]}
		p := startServe(t, c)
		tl, _ := e2eRun(t, e2eAdmin(p, c, "token", "list", "--format", "json")...)
		if !strings.Contains(tl, `"role": "admin"`) {
			t.Errorf("token list does not show the admin token:\n%s", tl)
		}
		p.stop(t)
	})

	t.Run("sigil.yaml", func(t *testing.T) {
		data, err := os.ReadFile(filepath.Join(caPath, "sigil.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		if !strings.Contains(text, "#") {
			t.Fatal("sigil.yaml has no comments")
		}
		e2eCheckEveryKeyCommented(t, text)
		if strings.Contains(text, testPassphrase) || e2eTokenRe.MatchString(text) {
			t.Error("sigil.yaml holds a secret")
		}
		cfg, err := ParseConfig(data, caPath)
		if err != nil {
			t.Fatalf("generated sigil.yaml does not load: %v", err)
		}
		if cfg.HTTPS.Addr != httpsAddr {
			t.Errorf("https.addr = %q, want %q", cfg.HTTPS.Addr, httpsAddr)
		}
		for _, name := range []string{"tls-server", "tls-client", "tls-server-client"} {
			if _, ok := cfg.Profiles[name]; !ok {
				t.Errorf("generated config lacks profile %s", name)
			}
		}
		if got, want := cfg.DatabasePath(), filepath.Join(caPath, "sigil.db"); got != want {
			t.Errorf("database path %s, want %s", got, want)
		}
	})

	t.Run("secrets stay out of output", func(t *testing.T) {
		if strings.Contains(out+errOut, testPassphrase) {
			t.Error("init printed the passphrase")
		}
	})

	t.Run("second init changes nothing", func(t *testing.T) {
		before := e2eSnapshotDir(t, caPath)
		line := e2eFail(t, args...)
		if !strings.Contains(line, "exists") {
			t.Errorf("refusal does not say the CA exists: %s", line)
		}
		after := e2eSnapshotDir(t, caPath)
		for path, b := range before {
			a, ok := after[path]
			switch {
			case !ok:
				t.Errorf("%s disappeared", path)
			case a.mode != b.mode || !a.mtime.Equal(b.mtime) || a.sum != b.sum:
				t.Errorf("%s changed: %v %v %x -> %v %v %x", path, b.mode, b.mtime, b.sum, a.mode, a.mtime, a.sum)
			}
		}
		for path := range after {
			if _, ok := before[path]; !ok {
				t.Errorf("%s appeared", path)
			}
		}
	})
}

// e2eCheckEveryKeyCommented checks the commenting rule of the generated
// sigil.yaml: each top-level key has a comment directly above it or in its
// section; each key nested under a section has a comment directly above it;
// each profile field is named in a comment before its first use (the
// profiles header documents every field).
func e2eCheckEveryKeyCommented(t *testing.T, text string) {
	t.Helper()
	lines := strings.Split(text, "\n")
	keyRe := regexp.MustCompile(`^( *)([A-Za-z_][A-Za-z0-9_-]*):`)
	indentOf := func(s string) int { return len(s) - len(strings.TrimLeft(s, " ")) }
	isComment := func(s string) bool { return strings.HasPrefix(strings.TrimSpace(s), "#") }
	prevIsComment := func(i int) bool {
		return i > 0 && strings.TrimSpace(lines[i-1]) != "" && isComment(lines[i-1])
	}
	var comments strings.Builder
	section, keys := "", 0
	for i, line := range lines {
		if isComment(line) {
			comments.WriteString(line + "\n")
			continue
		}
		m := keyRe.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		keys++
		indent, key := len(m[1]), m[2]
		switch {
		case indent == 0:
			section = key
			ok := prevIsComment(i)
			for j := i + 1; !ok && j < len(lines); j++ {
				if strings.TrimSpace(lines[j]) != "" && indentOf(lines[j]) == 0 {
					break
				}
				ok = isComment(lines[j])
			}
			if !ok {
				t.Errorf("sigil.yaml line %d: top-level key %q has no comment in its section", i+1, key)
			}
		case section == "profiles" && indent == 2:
			// A profile's name; the profiles header describes them.
		case section == "profiles":
			if !regexp.MustCompile(`\b` + regexp.QuoteMeta(key) + `\b`).MatchString(comments.String()) {
				t.Errorf("sigil.yaml line %d: profile field %q is not described in any comment above it", i+1, key)
			}
		default:
			if !prevIsComment(i) {
				t.Errorf("sigil.yaml line %d: key %s.%s has no comment directly above it", i+1, section, key)
			}
		}
	}
	if keys < 10 {
		t.Errorf("sigil.yaml has only %d keys; the check found nothing to check", keys)
	}
}
