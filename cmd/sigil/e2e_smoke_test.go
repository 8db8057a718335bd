package main

import (
	"strings"
	"testing"
)

func TestServeSmoke(t *testing.T) {
	c := initCA(t)
	p := startServe(t, c)
	out, errOut, err := runSigil(t, nil, append([]string{"keys", "list"}, p.clientArgs(c)...)...)
	if err != nil {
		t.Fatalf("keys list: %v\n%s", err, errOut)
	}
	for _, purpose := range []string{"root", "intermediate", "audit"} {
		if !strings.Contains(out, purpose) {
			t.Errorf("keys list lacks %s key:\n%s", purpose, out)
		}
	}
}
