package main

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sigil-ca/sigil/api"
)

// e2eDirNames lists dir's entries.
func e2eDirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// TestCLICertExport: `sigil cert export` against `sigil serve` writes the
// certificates its filters select, as CSV or NDJSON, for an admin or an
// auditor; a failing export leaves no file and no temporary file behind,
// and an existing file as it was.
func TestCLICertExport(t *testing.T) {
	t.Parallel()
	inProcess(t)
	c := initCA(t)
	p := startServe(t, c)
	a := e2eIssueSAN(t, p, c, "tls-server", "a.export.example", "www.a.export.example")
	b := e2eIssueSAN(t, p, c, "tls-server", "b.export.example")
	e2eRun(t, e2eAdmin(p, c, "cert", "revoke", e2eSerial(b[0]), "--reason", "superseded")...)
	dir := t.TempDir()

	t.Run("csv", func(t *testing.T) {
		out := filepath.Join(dir, "all.csv")
		stdout, stderr := e2eRun(t, e2eAdmin(p, c, "cert", "export", "--format", "csv", "--out", out,
			"--name-suffix", ".export.example", "--sort", "issued_asc")...)
		if stdout != "" || !strings.Contains(stderr, "exported 2 certificate(s) to "+out) {
			t.Errorf("stdout %q, stderr:\n%s", stdout, stderr)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
		if err != nil {
			t.Fatalf("%v\n%s", err, data)
		}
		if len(rows) != 3 || !slices.Equal(rows[0], api.CertCSVHeader) {
			t.Fatalf("CSV:\n%s", data)
		}
		if rows[1][0] != e2eSerial(a[0]) || rows[1][11] != "valid" || rows[2][0] != e2eSerial(b[0]) ||
			rows[2][11] != "revoked" || rows[2][13] != "superseded" {
			t.Errorf("rows %v", rows[1:])
		}
		if sans := rows[1][3]; sans != "a.export.example www.a.export.example" {
			t.Errorf("sans cell %q", sans)
		}
		if info, err := os.Stat(out); err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("export file mode: %v %v", info, err)
		}
	})

	t.Run("ndjson, revoked, by an auditor", func(t *testing.T) {
		out, _ := e2eRun(t, e2eAdmin(p, c, "token", "create", "--role", "auditor", "--description", "export test")...)
		auditor := e2eTokenRe.FindString(out)
		if auditor == "" {
			t.Fatalf("token create printed no token:\n%s", out)
		}
		file := filepath.Join(dir, "revoked.ndjson")
		e2eRun(t, e2eWithToken(p, c, auditor, "cert", "export", "--out", file, "--status", "revoked", "-q")...)
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var certs []api.Certificate
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			var cert api.Certificate
			if err := json.Unmarshal(sc.Bytes(), &cert); err != nil {
				t.Fatalf("line %q: %v", sc.Text(), err)
			}
			certs = append(certs, cert)
		}
		if len(certs) != 1 || certs[0].Serial != e2eSerial(b[0]) || certs[0].Status != "revoked" {
			t.Fatalf("NDJSON export of revoked certificates:\n%s", data)
		}
		if chain := e2eParseChain(t, []byte(certs[0].PEM)); len(chain) != 1 || !chain[0].Equal(b[0]) {
			t.Error("the NDJSON record's PEM is not the certificate")
		}
	})

	t.Run("failures leave no file", func(t *testing.T) {
		fdir := t.TempDir()
		kept := filepath.Join(fdir, "kept.csv")
		if err := os.WriteFile(kept, []byte("earlier export\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name, out string
			args      []string
			want      string
		}{
			{"bad filter", "bad.csv", []string{"--issued-after", "yesterday"}, "RFC 3339"},
			{"unknown status", "status.ndjson", []string{"--status", "gone"}, "unknown status"},
			{"bad format", "format.xlsx", []string{"--format", "xlsx"}, `--format "xlsx"`},
			{"existing file kept", "kept.csv", []string{"--format", "csv", "--sort", "sideways"}, "unknown sort"},
			{"no such directory", "missing/x.csv", []string{"--format", "csv"}, "missing/x.csv"},
		} {
			args := append([]string{"cert", "export", "--out", filepath.Join(fdir, tc.out)}, tc.args...)
			if line := e2eFail(t, e2eAdmin(p, c, args...)...); !strings.Contains(line, tc.want) {
				t.Errorf("%s: error %q, want it to say %q", tc.name, line, tc.want)
			}
		}
		if names := e2eDirNames(t, fdir); !slices.Equal(names, []string{"kept.csv"}) {
			t.Errorf("after failed exports the directory holds %v, want only kept.csv", names)
		}
		if data, _ := os.ReadFile(kept); string(data) != "earlier export\n" {
			t.Errorf("a failed export changed an existing file: %q", data)
		}
	})
}
