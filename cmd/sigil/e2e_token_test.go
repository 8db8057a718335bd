package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// ---------------------------------------------------------------------------
// Tokens

func TestCLITokens(t *testing.T) {
	t.Parallel()
	inProcess(t)
	c := initCA(t)
	p := startServe(t, c)
	dir := t.TempDir()
	createdRe := regexp.MustCompile(`created (\w+) token (\S+) `)

	create := func(t *testing.T, args ...string) (id, secret string) {
		t.Helper()
		out, errOut := e2eRun(t, e2eAdmin(p, c, append([]string{"token", "create"}, args...)...)...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 1 || !e2eTokenRe.MatchString(lines[0]) {
			t.Fatalf("token create should print the secret alone on stdout, got:\n%s", out)
		}
		m := createdRe.FindStringSubmatch(errOut)
		if m == nil {
			t.Fatalf("token create stderr does not name the token:\n%s", errOut)
		}
		if strings.Count(out+errOut, lines[0]) != 1 {
			t.Errorf("the secret is printed more than once")
		}
		return m[2], lines[0]
	}
	issue := func(tok, profile, name string) (string, string, error) {
		return runSigil(t, nil, e2eWithToken(p, c, tok, "cert", "issue", "--san", name, "--profile", profile,
			"--key-out", filepath.Join(dir, name+".key"))...)
	}

	issuerID, issuer := create(t, "--role", "issuer", "--profiles", "tls-client")
	auditorID, auditor := create(t, "--role", "auditor")

	t.Run("issuer", func(t *testing.T) {
		out, errOut, err := issue(issuer, "tls-server", "srv.example")
		if err == nil {
			t.Fatalf("issuer token limited to tls-client issued with tls-server:\n%s", out)
		}
		if line := e2eOneErrorLine(t, errOut); !strings.Contains(line, "forbidden") {
			t.Errorf("want a forbidden error, got %s", line)
		}
		out, errOut, err = issue(issuer, "tls-client", "cli.example")
		if err != nil {
			t.Fatalf("issuer token could not issue with tls-client: %v\n%s", err, errOut)
		}
		leaf := e2eParseChain(t, []byte(out))[0]
		got := e2eListCerts(t, p, c, "--serial", e2eSerial(leaf))
		if len(got) != 1 || got[0].Requester != "token:"+issuerID {
			t.Errorf("record %+v, want requester token:%s", got, issuerID)
		}
		// An issuer cannot administer.
		_, errOut, err = runSigil(t, nil, e2eWithToken(p, c, issuer, "token", "create", "--role", "admin")...)
		if err == nil || !strings.Contains(e2eOneErrorLine(t, errOut), "forbidden") {
			t.Errorf("issuer created a token: %v %s", err, errOut)
		}
	})

	t.Run("auditor", func(t *testing.T) {
		for _, args := range [][]string{{"cert", "list"}, {"audit", "list"}, {"keys", "list"}} {
			if _, errOut, err := runSigil(t, nil, e2eWithToken(p, c, auditor, args...)...); err != nil {
				t.Errorf("auditor cannot %v: %v\n%s", args, err, errOut)
			}
		}
		out, errOut, err := issue(auditor, "tls-server", "aud.example")
		if err == nil {
			t.Fatalf("auditor issued a certificate:\n%s", out)
		}
		if line := e2eOneErrorLine(t, errOut); !strings.Contains(line, "forbidden") {
			t.Errorf("want a forbidden error, got %s", line)
		}
		if _, err := os.Stat(filepath.Join(dir, "aud.example.key")); err == nil {
			t.Error("refused issuance wrote the key file")
		}
	})

	t.Run("list never prints secrets", func(t *testing.T) {
		for _, format := range []string{"table", "json", "csv"} {
			out, errOut := e2eRun(t, e2eAdmin(p, c, "token", "list", "--format", format)...)
			for _, secret := range []string{c.adminToken, issuer, auditor} {
				// sigil_<id>_<secret>: the id may show, the secret part never.
				// The id is hex; the base64url secret may itself hold "_", so
				// everything after the second "_" is the secret.
				part := strings.SplitN(secret, "_", 3)[2]
				if strings.Contains(out+errOut, part) {
					t.Errorf("token list --format %s prints a secret", format)
				}
			}
			for _, id := range []string{issuerID, auditorID} {
				if !strings.Contains(out, id) {
					t.Errorf("token list --format %s lacks token %s", format, id)
				}
			}
		}
	})

	t.Run("revoke", func(t *testing.T) {
		_, errOut := e2eRun(t, e2eAdmin(p, c, "token", "revoke", auditorID)...)
		if !strings.Contains(errOut, auditorID) {
			t.Errorf("revoke did not confirm: %s", errOut)
		}
		_, errOut, err := runSigil(t, nil, e2eWithToken(p, c, auditor, "cert", "list")...)
		if err == nil {
			t.Fatal("a revoked token still works")
		}
		if line := e2eOneErrorLine(t, errOut); !strings.Contains(line, "unauthorized") {
			t.Errorf("want unauthorized, got %s", line)
		}
		// Revoking again, or an unknown id, is a clear error.
		e2eFail(t, e2eAdmin(p, c, "token", "revoke", auditorID)...)
		e2eFail(t, e2eAdmin(p, c, "token", "revoke", "0000000000000000")...)
		// Other tokens still work.
		if _, errOut, err := issue(issuer, "tls-client", "still.example"); err != nil {
			t.Errorf("issuer token stopped working after another was revoked: %s", errOut)
		}
		// Token events are audited.
		for _, action := range []string{"token.created", "token.revoked"} {
			if len(e2eListAudit(t, p, c, "--action", action, "--target", auditorID)) != 1 {
				t.Errorf("no %s event for %s", action, auditorID)
			}
		}
	})

	t.Run("bad token", func(t *testing.T) {
		_, errOut, err := runSigil(t, nil, e2eWithToken(p, c, "sigil_0000000000000000_bogus", "cert", "list")...)
		if err == nil || !strings.Contains(e2eOneErrorLine(t, errOut), "unauthorized") {
			t.Errorf("a bogus token was accepted: %v %s", err, errOut)
		}
	})
}
