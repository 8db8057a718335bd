package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/ca"
)

func TestAudit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const n = 5
	var serials []string
	for i := range n {
		serials = append(serials, e.sign(t, e.admin, "tls-server", fmt.Sprintf("a%d.example.com", i)).Serial)
	}
	// A refusal is audited too, and is not a cert.* event.
	resp, data := e.do(t, "POST", "/v1/sign", e.admin, api.SignRequest{CSR: csrPEM(t, newKey(t), "x.example.com"), Profile: "tls-server"})
	checkError(t, resp, data, http.StatusBadRequest, "bad_csr")
	auditor := e.auditorToken(t)

	all := e.audit(t, "")
	for i := 1; i < len(all); i++ {
		if all[i].Seq <= all[i-1].Seq {
			t.Errorf("events not in seq order: %d after %d", all[i].Seq, all[i-1].Seq)
		}
		if !bytes.Equal(all[i].PrevHash, all[i-1].Hash) {
			t.Errorf("event %d prev_hash does not chain to %d", all[i].Seq, all[i-1].Seq)
		}
	}

	t.Run("exact action", func(t *testing.T) {
		evs := e.audit(t, "action=cert.issued")
		if len(evs) != n+3 {
			t.Errorf("%d cert.issued events, want %d", len(evs), n+3)
		}
		targets := map[string]bool{}
		for _, ev := range evs {
			if ev.Action != "cert.issued" {
				t.Errorf("action %q", ev.Action)
			}
			targets[ev.Target] = true
		}
		for _, s := range serials {
			if !targets[s] {
				t.Errorf("no cert.issued event for %s", s)
			}
		}
	})

	t.Run("prefix", func(t *testing.T) {
		evs := e.audit(t, "action=cert.")
		if len(evs) < n+3 {
			t.Errorf("%d cert.* events, want at least %d", len(evs), n+3)
		}
		var want int
		for _, ev := range all {
			if strings.HasPrefix(ev.Action, "cert.") {
				want++
			}
		}
		if len(evs) != want {
			t.Errorf("%d cert.* events, want %d", len(evs), want)
		}
		for _, ev := range evs {
			if !strings.HasPrefix(ev.Action, "cert.") {
				t.Errorf("action %q", ev.Action)
			}
		}
		if evs := e.audit(t, "action=cert"); len(evs) != 0 {
			t.Errorf("action=cert (no dot) matched %d events; only a trailing dot makes a prefix", len(evs))
		}
		if evs := e.audit(t, "action=request.refused"); len(evs) != 1 {
			t.Errorf("%d request.refused events, want 1", len(evs))
		}
	})

	t.Run("cursor", func(t *testing.T) {
		var got []int64
		cursor := ""
		for page := 0; ; page++ {
			if page > 10 {
				t.Fatal("pagination does not end")
			}
			path := "/v1/audit?action=cert.issued&limit=3"
			if cursor != "" {
				path += "&cursor=" + cursor
			}
			var out api.AuditList
			raw := e.getJSON(t, "GET", path, auditor, nil, http.StatusOK, &out)
			if len(out.Events) > 3 {
				t.Errorf("page of %d events, limit 3", len(out.Events))
			}
			for _, ev := range out.Events {
				if len(got) > 0 && ev.Seq <= got[len(got)-1] {
					t.Errorf("seq %d after %d", ev.Seq, got[len(got)-1])
				}
				got = append(got, ev.Seq)
			}
			if out.NextCursor == "" {
				if bytes.Contains(raw, []byte("next_cursor")) {
					t.Errorf("last page has a next_cursor field")
				}
				break
			}
			cursor = out.NextCursor
		}
		if len(got) != n+3 {
			t.Errorf("paged through %d events, want %d", len(got), n+3)
		}
	})

	t.Run("actor and target", func(t *testing.T) {
		evs := e.audit(t, "actor=token:"+e.adminID+"&action=cert.issued")
		if len(evs) != n {
			t.Errorf("%d events by the admin token, want %d", len(evs), n)
		}
		if evs := e.audit(t, "target="+serials[2]); len(evs) != 1 || evs[0].Target != serials[2] {
			t.Errorf("target filter: %+v", evs)
		}
	})

	t.Run("time window", func(t *testing.T) {
		now := e.clk.Now()
		if evs := e.audit(t, "after="+now.Add(time.Second).Format(time.RFC3339)); len(evs) != 0 {
			t.Errorf("%d events after now", len(evs))
		}
		// The auditor's reads above are audited too (audit.read): count
		// the log as it stands now.
		if evs, total := e.audit(t, "before="+now.Add(time.Second).Format(time.RFC3339)), e.audit(t, ""); len(evs) != len(total) {
			t.Errorf("%d events before now, want %d", len(evs), len(total))
		}
	})

	t.Run("bad queries", func(t *testing.T) {
		for _, q := range []string{"cursor=x", "cursor=0", "limit=0", "limit=5000", "after=today", "before=2026"} {
			resp, data := e.do(t, "GET", "/v1/audit?"+q, e.admin, nil)
			checkError(t, resp, data, http.StatusBadRequest, "malformed")
		}
	})
}

func TestTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	now := e.clk.Now()
	resp, data := e.do(t, "POST", "/v1/tokens", e.admin, api.TokenRequest{
		Role: ca.RoleIssuer, Profiles: []string{"tls-client", "tls-server"}, TTL: "24h", Description: "ci runner",
	})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %s", resp.StatusCode, data)
	}
	var tok api.Token
	if err := json.Unmarshal(data, &tok); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok.Secret, "sigil_"+tok.ID+"_") {
		t.Errorf("secret %q does not start with sigil_<id>_", tok.Secret)
	}
	if tok.Role != ca.RoleIssuer || strings.Join(tok.Profiles, ",") != "tls-client,tls-server" || tok.Description != "ci runner" {
		t.Errorf("token = %+v", tok)
	}
	if !tok.Expires.Equal(now.Add(24 * time.Hour)) {
		t.Errorf("expires = %v, want %v", tok.Expires, now.Add(24*time.Hour))
	}
	secretPart := strings.TrimPrefix(tok.Secret, "sigil_"+tok.ID+"_")
	e.sign(t, tok.Secret, "tls-client", "c.example.com")

	t.Run("listed without secret", func(t *testing.T) {
		var list struct {
			Tokens []map[string]any `json:"tokens"`
		}
		raw := e.getJSON(t, "GET", "/v1/tokens", e.admin, nil, http.StatusOK, &list)
		if bytes.Contains(raw, []byte(secretPart)) || bytes.Contains(raw, []byte(e.admin[len("sigil_"+e.adminID+"_"):])) {
			t.Errorf("token list contains a secret: %s", raw)
		}
		var found bool
		for _, m := range list.Tokens {
			if _, ok := m["token"]; ok {
				t.Errorf("listed token %v has a token field", m["id"])
			}
			for k := range m {
				if strings.Contains(strings.ToLower(k), "secret") || strings.Contains(strings.ToLower(k), "hash") {
					t.Errorf("listed token has field %q", k)
				}
			}
			if m["id"] == tok.ID {
				found = true
				if m["role"] != ca.RoleIssuer || m["description"] != "ci runner" {
					t.Errorf("listed %v", m)
				}
			}
		}
		if !found || len(list.Tokens) != 2 {
			t.Errorf("list has %d tokens (found new: %v), want the admin token and the new one", len(list.Tokens), found)
		}
	})

	t.Run("secret not in audit or logs", func(t *testing.T) {
		raw := e.getJSON(t, "GET", "/v1/audit?action=token.created", e.admin, nil, http.StatusOK, nil)
		if bytes.Contains(raw, []byte(secretPart)) {
			t.Error("audit contains the token secret")
		}
		if !bytes.Contains(raw, []byte(tok.ID)) {
			t.Error("token creation not audited")
		}
		if strings.Contains(e.logs.String(), secretPart) {
			t.Error("logs contain the token secret")
		}
	})

	t.Run("bad requests", func(t *testing.T) {
		for name, body := range map[string]any{
			"unknown role":            api.TokenRequest{Role: "root"},
			"issuer without profiles": api.TokenRequest{Role: ca.RoleIssuer},
			"auditor with profiles":   api.TokenRequest{Role: ca.RoleAuditor, Profiles: []string{"tls-client"}},
			"unknown profile":         api.TokenRequest{Role: ca.RoleIssuer, Profiles: []string{"nope"}},
			"bad ttl":                 api.TokenRequest{Role: ca.RoleAuditor, TTL: "forever"},
			"negative ttl":            api.TokenRequest{Role: ca.RoleAuditor, TTL: "-1h"},
			"unknown field":           `{"role":"auditor","secret":"mine"}`,
			"trailing data":           `{"role":"auditor"}{"role":"admin"}`,
			"not json":                `role=auditor`,
		} {
			t.Run(name, func(t *testing.T) {
				resp, data := e.do(t, "POST", "/v1/tokens", e.admin, body)
				checkError(t, resp, data, http.StatusBadRequest, "malformed")
			})
		}
		resp, data := e.do(t, "POST", "/v1/tokens", e.admin, `{"role":"auditor"}`, header("Content-Type", "text/plain"))
		checkError(t, resp, data, http.StatusBadRequest, "malformed")
	})

	t.Run("revoke", func(t *testing.T) {
		resp, data := e.do(t, "DELETE", "/v1/tokens/"+tok.ID, e.admin, nil)
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("revoke: %d %s", resp.StatusCode, data)
		}
		if len(data) != 0 {
			t.Errorf("204 with body %q", data)
		}
		resp, data = e.do(t, "DELETE", "/v1/tokens/"+tok.ID, e.admin, nil)
		checkError(t, resp, data, http.StatusNotFound, "not_found")
		resp, data = e.do(t, "DELETE", "/v1/tokens/ffffffffffffffff", e.admin, nil)
		checkError(t, resp, data, http.StatusNotFound, "not_found")
		resp, data = e.do(t, "POST", "/v1/sign", tok.Secret, api.SignRequest{CSR: csrPEM(t, newKey(t), "", "c.example.com"), Profile: "tls-client"})
		checkError(t, resp, data, http.StatusUnauthorized, "unauthorized")

		var list struct {
			Tokens []api.Token `json:"tokens"`
		}
		e.getJSON(t, "GET", "/v1/tokens", e.admin, nil, http.StatusOK, &list)
		for _, l := range list.Tokens {
			if l.ID == tok.ID && l.Revoked.IsZero() {
				t.Error("revoked token listed without revoked time")
			}
		}
		if evs := e.audit(t, "action=token.revoked&target="+tok.ID); len(evs) != 1 {
			t.Errorf("%d token.revoked events, want 1", len(evs))
		}
	})
}

func TestRewrap(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const (
		wrong = "not the passphrase at all"
		next  = "a brand new passphrase 42"
	)
	kekIDs := func(keys []ca.KeyInfo) map[string]string {
		m := map[string]string{}
		for _, k := range keys {
			m[k.ID] = k.KEK
		}
		return m
	}
	before := kekIDs(e.keys(t))
	for id, kek := range before {
		if kek != "kek-1" {
			t.Fatalf("key %s starts under %q, want kek-1", id, kek)
		}
	}

	t.Run("wrong current passphrase", func(t *testing.T) {
		resp, data := e.do(t, "POST", "/v1/keys/rewrap", e.admin, api.RewrapRequest{CurrentPassphrase: wrong, NewPassphrase: next})
		checkError(t, resp, data, http.StatusForbidden, "forbidden")
		if after := kekIDs(e.keys(t)); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("keys changed: %v -> %v", before, after)
		}
		if evs := e.audit(t, "action=kek.rotated"); len(evs) != 0 {
			t.Errorf("%d kek.rotated events after a refused re-wrap, want 0", len(evs))
		}
		if evs := e.audit(t, "action=kek.rewrap.refused"); len(evs) != 1 {
			t.Errorf("%d kek.rewrap.refused events, want 1: refusals are audited", len(evs))
		}
	})

	t.Run("short new passphrase", func(t *testing.T) {
		resp, data := e.do(t, "POST", "/v1/keys/rewrap", e.admin, api.RewrapRequest{CurrentPassphrase: initPassphrase, NewPassphrase: "short"})
		checkError(t, resp, data, http.StatusBadRequest, "malformed")
		if after := kekIDs(e.keys(t)); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("keys changed: %v -> %v", before, after)
		}
	})

	t.Run("unknown field", func(t *testing.T) {
		resp, data := e.do(t, "POST", "/v1/keys/rewrap", e.admin,
			`{"current_passphrase":"`+initPassphrase+`","new_passphrase":"`+next+`","kdf":"none"}`)
		checkError(t, resp, data, http.StatusBadRequest, "malformed")
	})

	t.Run("right passphrase", func(t *testing.T) {
		var out api.RewrapResponse
		e.getJSON(t, "POST", "/v1/keys/rewrap", e.admin, api.RewrapRequest{CurrentPassphrase: initPassphrase, NewPassphrase: next},
			http.StatusOK, &out)
		if out.KEK != "kek-2" || out.Keys != len(before) {
			t.Errorf("rewrap = %+v, want kek-2 and %d keys", out, len(before))
		}
		after := kekIDs(e.keys(t))
		if len(after) != len(before) {
			t.Errorf("%d keys after, %d before", len(after), len(before))
		}
		for id, kek := range after {
			if kek != "kek-2" {
				t.Errorf("key %s under %q, want kek-2", id, kek)
			}
		}
		// Issuance goes on, and the old passphrase no longer opens anything.
		e.sign(t, e.admin, "tls-server", "after-rewrap.example.com")
		resp, data := e.do(t, "POST", "/v1/keys/rewrap", e.admin, api.RewrapRequest{CurrentPassphrase: initPassphrase, NewPassphrase: next + "!"})
		checkError(t, resp, data, http.StatusForbidden, "forbidden")
	})

	raw := e.getJSON(t, "GET", "/v1/audit", e.admin, nil, http.StatusOK, nil)
	e.srv.Close() // waits for every handler, so every request line is written
	logs := e.logs.String()
	if !strings.Contains(logs, "/v1/keys/rewrap") {
		t.Fatalf("no request log lines for /v1/keys/rewrap:\n%s", logs)
	}
	for _, p := range []string{initPassphrase, wrong, next} {
		if strings.Contains(logs, p) {
			t.Errorf("logs contain passphrase %q", p)
		}
		if bytes.Contains(raw, []byte(p)) {
			t.Errorf("audit contains passphrase %q", p)
		}
	}
}
