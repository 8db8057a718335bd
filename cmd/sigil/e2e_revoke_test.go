package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/api"
)

// ---------------------------------------------------------------------------
// sigil cert revoke / cert unhold

// e2eShowFields runs `cert show` and returns its "field: value" lines.
func e2eShowFields(t testing.TB, p *serverProc, c *caDir, serial string) map[string]string {
	t.Helper()
	out, _ := e2eRun(t, e2eAdmin(p, c, "cert", "show", serial)...)
	return e2eFields(t, out)
}

// e2eFields parses "field: value" lines.
func e2eFields(t testing.TB, out string) map[string]string {
	t.Helper()
	fields := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("line %q is not \"field: value\"", line)
		}
		fields[k] = strings.TrimSpace(v)
	}
	return fields
}

func TestCLICertRevoke(t *testing.T) {
	t.Parallel()
	inProcess(t)
	c := initCA(t)
	p := startServe(t, c)
	leaf := e2eIssueSAN(t, p, c, "tls-server", "revoke.example")[0]
	serial := e2eSerial(leaf)

	// Revoke, with the serial as openssl prints it.
	out, _ := e2eRun(t, e2eAdmin(p, c, "cert", "revoke", strings.ToUpper(serial), "--reason", "keyCompromise")...)
	revoked := e2eFields(t, out)
	if revoked["serial"] != serial || revoked["status"] != "revoked" || revoked["reason"] != "keyCompromise" {
		t.Errorf("cert revoke printed:\n%s", out)
	}
	revokedAt, err := time.Parse(time.RFC3339, revoked["revoked"])
	if err != nil || revokedAt.Before(leaf.NotBefore) || time.Since(revokedAt) > time.Minute {
		t.Errorf("revoked %q is not a time shortly after issuance", revoked["revoked"])
	}

	t.Run("show", func(t *testing.T) {
		fields := e2eShowFields(t, p, c, serial)
		for k, v := range map[string]string{"status": "revoked", "reason": "keyCompromise", "revoked": revoked["revoked"]} {
			if fields[k] != v {
				t.Errorf("cert show %s = %q, want %q", k, fields[k], v)
			}
		}
		if _, ok := fields["invalidity date"]; ok {
			t.Errorf("cert show has an invalidity date none was given for")
		}
		js, _ := e2eRun(t, e2eAdmin(p, c, "cert", "show", serial, "--format", "json")...)
		var got api.Certificate
		if err := json.Unmarshal([]byte(js), &got); err != nil {
			t.Fatalf("cert show --format json: %v\n%s", err, js)
		}
		if got.Status != "revoked" || got.RevocationReason != "keyCompromise" || !got.RevokedAt.Equal(revokedAt) {
			t.Errorf("cert show json = %+v", got)
		}
		if list := e2eListCerts(t, p, c, "--status", "revoked"); len(list) != 1 || list[0].Serial != serial {
			t.Errorf("cert list --status revoked = %+v, want %s", list, serial)
		}
	})

	t.Run("again", func(t *testing.T) {
		line := e2eFail(t, e2eAdmin(p, c, "cert", "revoke", serial, "--reason", "superseded")...)
		want := "certificate " + serial + " is already revoked (keyCompromise) since " + revoked["revoked"]
		if !strings.Contains(line, want) {
			t.Errorf("error %q does not say %q", line, want)
		}
		if fields := e2eShowFields(t, p, c, serial); fields["reason"] != "keyCompromise" || fields["revoked"] != revoked["revoked"] {
			t.Errorf("a refused revocation changed the record: %v", fields)
		}
	})

	t.Run("refusals", func(t *testing.T) {
		other := e2eSerial(e2eIssueSAN(t, p, c, "tls-server", "other.example")[0])
		for _, tc := range []struct {
			name    string
			args    []string
			explain string // what the one error line must contain
		}{
			{"unknown reason", []string{"cert", "revoke", other, "--reason", "bogus"}, `--reason: unknown revocation reason "bogus"`},
			{"unused code", []string{"cert", "revoke", other, "--reason", "7"}, "not assigned"},
			{"removeFromCRL", []string{"cert", "revoke", other, "--reason", "removeFromCRL"}, "unhold"},
			{"no reason", []string{"cert", "revoke", other}, "reason"},
			{"bad invalidity date", []string{"cert", "revoke", other, "--reason", "1", "--invalidity-date", "yesterday"}, "--invalidity-date"},
			{"future invalidity date", []string{"cert", "revoke", other, "--reason", "1", "--invalidity-date", "2099-01-01T00:00:00Z"}, "in the future"},
			{"unknown serial", []string{"cert", "revoke", "abcdef0123456789", "--reason", "1"}, "no certificate with serial abcdef0123456789"},
			{"malformed serial", []string{"cert", "revoke", "not-a-serial", "--reason", "1"}, "not-a-serial"},
			{"unhold of a valid certificate", []string{"cert", "unhold", other}, "not on hold"},
			{"unhold of a revoked certificate", []string{"cert", "unhold", serial}, "cannot be undone"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if line := e2eFail(t, e2eAdmin(p, c, tc.args...)...); !strings.Contains(line, tc.explain) {
					t.Errorf("error line does not mention %q: %s", tc.explain, line)
				}
			})
		}
		if fields := e2eShowFields(t, p, c, other); fields["status"] != "valid" {
			t.Errorf("refused requests changed %s: %v", other, fields)
		}
	})

	t.Run("hold and unhold", func(t *testing.T) {
		held := e2eIssueSAN(t, p, c, "tls-server", "held.example")[0]
		hs := e2eSerial(held)
		inv := held.NotBefore.Add(time.Second).UTC().Format(time.RFC3339)
		out, _ := e2eRun(t, e2eAdmin(p, c, "cert", "revoke", hs, "--reason", "certificate-hold", "--invalidity-date", inv)...)
		if f := e2eFields(t, out); f["status"] != "revoked" || f["reason"] != "certificateHold" || f["invalidity date"] != inv {
			t.Errorf("hold printed:\n%s", out)
		}
		out, _ = e2eRun(t, e2eAdmin(p, c, "cert", "unhold", hs)...)
		f := e2eFields(t, out)
		if f["status"] != "valid" {
			t.Errorf("unhold printed:\n%s", out)
		}
		for _, k := range []string{"revoked", "reason", "invalidity date"} {
			if _, ok := f[k]; ok {
				t.Errorf("an unheld certificate still shows %s:\n%s", k, out)
			}
		}
		if fields := e2eShowFields(t, p, c, hs); fields["status"] != "valid" {
			t.Errorf("cert show after unhold: %v", fields)
		}
		line := e2eFail(t, e2eAdmin(p, c, "cert", "unhold", hs)...)
		if !strings.Contains(line, "not on hold") {
			t.Errorf("second unhold: %s", line)
		}
		out, _ = e2eRun(t, e2eAdmin(p, c, "cert", "revoke", hs, "--reason", "4", "--format", "json")...)
		var got api.Certificate
		if err := json.Unmarshal([]byte(out), &got); err != nil || got.RevocationReason != "superseded" || !got.InvalidityDate.IsZero() {
			t.Errorf("revoke after unhold --format json = %+v, %v", got, err)
		}
	})

	t.Run("issuer token", func(t *testing.T) {
		tokOut, errOut := e2eRun(t, e2eAdmin(p, c, "token", "create", "--role", "issuer", "--profiles", "tls-server")...)
		issuer := strings.TrimSpace(tokOut)
		m := regexp.MustCompile(`created issuer token (\S+) `).FindStringSubmatch(errOut)
		if m == nil {
			t.Fatalf("token create did not name the token:\n%s", errOut)
		}
		out, _ := e2eRun(t, e2eWithToken(p, c, issuer, "cert", "issue", "--san", "mine.example", "--profile", "tls-server",
			"--key-out", t.TempDir()+"/k.pem")...)
		mine := e2eSerial(e2eParseChain(t, []byte(out))[0])
		theirs := e2eSerial(e2eIssueSAN(t, p, c, "tls-server", "theirs.example")[0])

		if line := e2eFail(t, e2eWithToken(p, c, issuer, "cert", "revoke", theirs, "--reason", "superseded")...); !strings.Contains(line, "forbidden") {
			t.Errorf("issuer revoking another's certificate: %s", line)
		}
		if line := e2eFail(t, e2eWithToken(p, c, issuer, "cert", "unhold", mine)...); !strings.Contains(line, "forbidden") {
			t.Errorf("issuer unhold: %s", line)
		}
		out, _ = e2eRun(t, e2eWithToken(p, c, issuer, "cert", "revoke", mine, "--reason", "superseded")...)
		if f := e2eFields(t, out); f["status"] != "revoked" {
			t.Errorf("issuer revoking its own certificate printed:\n%s", out)
		}
		evs := e2eListAudit(t, p, c, "--action", "cert.revoked")
		var actor string
		for _, ev := range evs {
			if ev.Target == mine {
				actor = ev.Actor
			}
		}
		if actor != "token:"+m[1] {
			t.Errorf("cert.revoked of %s by %q, want token:%s", mine, actor, m[1])
		}
	})

	t.Run("audited", func(t *testing.T) {
		var actions []string
		for _, ev := range e2eListAudit(t, p, c) {
			if ev.Target == serial {
				actions = append(actions, ev.Action+" "+ev.Detail["reason"])
			}
		}
		want := []string{"cert.issued ", "cert.revoked keyCompromise", "request.refused conflict", "request.refused conflict"}
		if strings.Join(actions, ",") != strings.Join(want, ",") {
			t.Errorf("audit events for %s = %q, want %q", serial, actions, want)
		}
	})

	p.stop(t)
	e2eAuditVerify(t, c)
}
