package main

import (
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var e2eExportOKRe = regexp.MustCompile(`audit export OK: (\d+) events, seq (\d+)\.\.(\d+), (\d+) signed checkpoints, head (\d+) [0-9a-f]{64}`)

// e2eVerifyExport runs `audit verify --export` and returns events, first
// and last seq.
func e2eVerifyExport(t *testing.T, c *caDir, path string) (events, first, last int) {
	t.Helper()
	out, _ := e2eRun(t, "audit", "verify", "--export", path, "--ca-file", c.root)
	m := e2eExportOKRe.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("audit verify --export output not understood:\n%s", out)
	}
	n := func(s string) int { v, _ := strconv.Atoi(s); return v }
	return n(m[1]), n(m[2]), n(m[3])
}

// TestCLIAuditExport exports the audit log of a running server, verifies the
// file offline with the root alone, and checks that a changed byte, a
// removed line or swapped lines fail verification naming the line.
func TestCLIAuditExport(t *testing.T) {
	t.Parallel()
	inProcess(t)
	c := initCA(t)
	p := startServe(t, c)
	e2eIssueSAN(t, p, c, "tls-server", "one.example")
	second := e2eIssueSAN(t, p, c, "tls-server", "two.example")[0]
	e2eIssueSAN(t, p, c, "tls-client", "three.example")
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.ndjson")

	out, errOut := e2eRun(t, e2eAdmin(p, c, "audit", "export", "--out", path)...)
	events, first, last := e2eVerifyExport(t, c, path)
	if want := fmt.Sprintf("exported %d audit events to %s\n", events, path); out != want {
		t.Errorf("export printed %q, want %q", out, want)
	}
	if !strings.Contains(errOut, "exporting") {
		t.Errorf("no progress bar on stderr: %q", errOut)
	}
	if first != 1 || last != events || events < 10 {
		t.Errorf("export holds %d events, seq %d..%d", events, first, last)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("export left %d files in its directory, want 1", len(ents))
	}

	t.Run("since", func(t *testing.T) {
		var since time.Time
		for _, e := range e2eListAudit(t, p, c, "--action", "cert.issued") {
			if e.Target == e2eSerial(second) {
				since = e.Time
			}
		}
		sincePath := filepath.Join(t.TempDir(), "since.ndjson")
		e2eRun(t, e2eAdmin(p, c, "audit", "export", "--since", since.Format(time.RFC3339Nano), "--out", sincePath)...)
		n, from, to := e2eVerifyExport(t, c, sincePath)
		if from <= 1 || to-from+1 != n {
			t.Errorf("since export holds %d events, seq %d..%d", n, from, to)
		}
	})

	t.Run("csv", func(t *testing.T) {
		csvPath := filepath.Join(t.TempDir(), "audit.csv")
		e2eRun(t, e2eAdmin(p, c, "audit", "export", "--format", "csv", "--out", csvPath)...)
		f, err := os.Open(csvPath)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		rows, err := csv.NewReader(f).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(rows[0], ",") != "seq,time,actor,action,target,detail,hash" || len(rows) < events+1 {
			t.Errorf("csv: header %v, %d rows, want at least %d", rows[0], len(rows)-1, events)
		}
	})

	t.Run("refused leaves no file", func(t *testing.T) {
		d := t.TempDir()
		e2eFail(t, e2eWithToken(p, c, "sigil_0123456789abcdef_nottherealsecretatall", "audit", "export", "--out", filepath.Join(d, "x.ndjson"))...)
		if ents, _ := os.ReadDir(d); len(ents) != 0 {
			t.Errorf("a refused export left %d files", len(ents))
		}
	})

	t.Run("foreign root", func(t *testing.T) {
		other := initCA(t)
		line := e2eFail(t, "audit", "verify", "--export", path, "--ca-file", other.root)
		if !strings.Contains(line, "FAILED") || !strings.Contains(line, "not certified by the given root") {
			t.Errorf("verify against a foreign root: %s", line)
		}
	})

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	var evLines, cpLines []int // 0-based indexes
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, `{"type":"event"`):
			evLines = append(evLines, i)
		case strings.HasPrefix(l, `{"type":"checkpoint"`):
			cpLines = append(cpLines, i)
		}
	}
	if len(evLines) != events || len(cpLines) == 0 {
		t.Fatalf("%d event lines, %d checkpoint lines", len(evLines), len(cpLines))
	}
	mid := evLines[len(evLines)/2]
	flip := func(i int, key string) []string {
		ls := append([]string(nil), lines...)
		at := strings.Index(ls[i], `"`+key+`":"`) + len(key) + 4
		b := []byte(ls[i])
		if b[at] == 'A' {
			b[at] = 'B'
		} else {
			b[at] = 'A'
		}
		ls[i] = string(b)
		return ls
	}
	without := func(i int) []string {
		return append(append([]string(nil), lines[:i]...), lines[i+1:]...)
	}
	swapped := append([]string(nil), lines...)
	swapped[mid], swapped[mid+1] = swapped[mid+1], swapped[mid]
	for _, tc := range []struct {
		name  string
		lines []string
		line  int // 1-based line the error must name
	}{
		{"byte changed in an event", flip(mid, "actor"), mid + 1},
		{"byte changed in a checkpoint signature", flip(cpLines[0], "signature"), cpLines[0] + 1},
		{"event line removed", without(mid), mid + 1},
		{"event lines swapped", swapped, mid + 1},
		{"end line removed", lines[:len(lines)-1], len(lines)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tampered := filepath.Join(t.TempDir(), "tampered.ndjson")
			if err := os.WriteFile(tampered, []byte(strings.Join(tc.lines, "\n")+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			line := e2eFail(t, "audit", "verify", "--export", tampered, "--ca-file", c.root)
			want := regexp.MustCompile(fmt.Sprintf(`invalid at line %d[ :]`, tc.line))
			if !strings.Contains(line, "FAILED") || !want.MatchString(line) {
				t.Errorf("got %q, want FAILED naming %q", line, want)
			}
		})
	}
}
