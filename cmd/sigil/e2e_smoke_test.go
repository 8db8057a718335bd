package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/sigil-ca/sigil/api"
)

// TestServeKeepsRootWrapped: serving unwraps the intermediate and audit keys
// and never the root (DESIGN.md, Keys).
func TestServeKeepsRootWrapped(t *testing.T) {
	inProcess(t)
	c := initCA(t)
	p := startServe(t, c)
	out, errOut, err := runSigil(t, nil, append([]string{"keys", "list", "--format", "json"}, p.clientArgs(c)...)...)
	if err != nil {
		t.Fatalf("keys list: %v\n%s", err, errOut)
	}
	var keys struct {
		Keys []struct{ ID, Purpose string }
	}
	if err := json.Unmarshal([]byte(out), &keys); err != nil {
		t.Fatalf("keys list json: %v\n%s", err, out)
	}
	purposeOf := map[string]string{}
	for _, k := range keys.Keys {
		purposeOf[k.ID] = k.Purpose
	}
	for _, purpose := range []string{"root", "intermediate", "audit"} {
		if !strings.Contains(out, `"`+purpose+`"`) {
			t.Errorf("keys list lacks the %s key:\n%s", purpose, out)
		}
	}
	out, errOut, err = runSigil(t, nil, append([]string{"audit", "list", "--action", "key.unwrapped", "--format", "json", "--all"}, p.clientArgs(c)...)...)
	if err != nil {
		t.Fatalf("audit list: %v\n%s", err, errOut)
	}
	var events api.AuditList
	if err := json.Unmarshal([]byte(out), &events); err != nil {
		t.Fatalf("audit list json: %v\n%s", err, out)
	}
	unwrapped := map[string]bool{}
	for _, e := range events.Events {
		unwrapped[purposeOf[e.Target]] = true
	}
	if unwrapped["root"] {
		t.Errorf("the serving process unwrapped the root key")
	}
	if !unwrapped["intermediate"] || !unwrapped["audit"] {
		t.Errorf("unwrapped purposes %v, want intermediate and audit (the test would be vacuous otherwise)", unwrapped)
	}
}
