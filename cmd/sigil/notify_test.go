package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadWebhookSecret(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	good := e2eWriteFile(t, dir, "good", []byte("0123456789abcdef0123\n"))
	s, err := readWebhookSecret(good, log)
	if err != nil || string(s) != "0123456789abcdef0123" || logs.Len() != 0 {
		t.Errorf("readWebhookSecret = %q, %v (log %q)", s, err, logs.String())
	}
	if fmt.Sprint(s) != "REDACTED" {
		t.Errorf("the secret prints as %q", fmt.Sprint(s))
	}
	short := e2eWriteFile(t, dir, "short", []byte("tooshort\n"))
	if _, err := readWebhookSecret(short, log); err == nil || !strings.Contains(err.Error(), "at least 16") || strings.Contains(err.Error(), "tooshort") {
		t.Errorf("short secret: %v", err)
	}
	if _, err := readWebhookSecret(filepath.Join(dir, "missing"), log); err == nil || !strings.Contains(err.Error(), "notify.secret_file") {
		t.Errorf("missing file: %v", err)
	}
	open := e2eWriteFile(t, dir, "open", []byte("0123456789abcdef0123"))
	if err := os.Chmod(open, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readWebhookSecret(open, log); err != nil || !strings.Contains(logs.String(), "may be read by other users") {
		t.Errorf("world-readable secret: %v, log %q", err, logs.String())
	}
}

func TestNotifyConfigPaths(t *testing.T) {
	t.Parallel()
	c, err := ParseConfig([]byte("notify:\n  webhook_url: https://hooks.example/x?token=tok-cfg\n  secret_file: s/secret\n"), "/etc/sigil")
	if err != nil {
		t.Fatal(err)
	}
	if p := c.secretPath(); p != "/etc/sigil/s/secret" {
		t.Errorf("secretPath %s", p)
	}
	_, err = ParseConfig([]byte("notify:\n  webhook_url: ftp://hooks.example/x?token=tok-cfg\n  secret_file: s\n"), "/etc/sigil")
	if err == nil || strings.Contains(err.Error(), "tok-cfg") {
		t.Errorf("bad URL error %v: want one that does not repeat the URL", err)
	}
}
