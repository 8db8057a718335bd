package main

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/csv"
	"encoding/json"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/api"
)

// ---------------------------------------------------------------------------
// sigil cert issue

func TestCLICertIssue(t *testing.T) {
	t.Parallel()
	inProcess(t)
	c := initCA(t)
	p := startServe(t, c)
	dir := t.TempDir()

	t.Run("csr file to --out", func(t *testing.T) {
		csrPath, keyPub := e2eCSRFile(t, dir, "csr.example")
		out := filepath.Join(dir, "csr-chain.pem")
		stdout, _ := e2eRun(t, e2eAdmin(p, c, "cert", "issue", "--csr", csrPath, "--profile", "tls-server", "--out", out)...)
		if stdout != "" {
			t.Errorf("with --out, stdout should be empty, got:\n%s", stdout)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		chain := e2eParseChain(t, data)
		e2eVerifyChain(t, c, chain, "csr.example", x509.ExtKeyUsageServerAuth)
		if !e2eSamePublicKey(keyPub, chain[0].PublicKey) {
			t.Error("leaf does not certify the CSR's key")
		}
	})

	t.Run("san with key-out", func(t *testing.T) {
		keyOut, out := filepath.Join(dir, "a.key"), filepath.Join(dir, "a-chain.pem")
		e2eRun(t, e2eAdmin(p, c, "cert", "issue", "--san", "a.example", "--san", "10.0.0.5", "--profile", "tls-server",
			"--key-out", keyOut, "--out", out)...)
		info, err := os.Stat(keyOut)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o600 {
			t.Errorf("key file mode %v, want 0600", info.Mode().Perm())
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		chain := e2eParseChain(t, data)
		e2eVerifyChain(t, c, chain, "a.example", x509.ExtKeyUsageServerAuth)
		e2eVerifyChain(t, c, chain, "10.0.0.5", x509.ExtKeyUsageServerAuth)
		leaf := chain[0]
		if !slices.Equal(leaf.DNSNames, []string{"a.example"}) || len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.ParseIP("10.0.0.5")) {
			t.Errorf("leaf SANs: dns %v ip %v", leaf.DNSNames, leaf.IPAddresses)
		}
		if !e2eSamePublicKey(e2eKeyFile(t, keyOut).Public(), leaf.PublicKey) {
			t.Error("key file does not match the leaf's public key")
		}

		// An existing key file is never overwritten.
		before, _ := os.ReadFile(keyOut)
		line := e2eFail(t, e2eAdmin(p, c, "cert", "issue", "--san", "b.example", "--profile", "tls-server", "--key-out", keyOut)...)
		if !strings.Contains(line, "exists") {
			t.Errorf("refusal does not explain: %s", line)
		}
		if after, _ := os.ReadFile(keyOut); !bytes.Equal(before, after) {
			t.Error("an existing --key-out file was overwritten")
		}
	})

	t.Run("chain to stdout", func(t *testing.T) {
		keyOut := filepath.Join(dir, "s.key")
		stdout, _ := e2eRun(t, e2eAdmin(p, c, "cert", "issue", "--san", "stdout.example", "--profile", "tls-server", "--key-out", keyOut)...)
		chain := e2eParseChain(t, []byte(stdout))
		e2eVerifyChain(t, c, chain, "stdout.example", x509.ExtKeyUsageServerAuth)
		if !e2eSamePublicKey(e2eKeyFile(t, keyOut).Public(), chain[0].PublicKey) {
			t.Error("key file does not match the leaf's public key")
		}
	})
}

// TestCLIIssueProfilesAndKeyTypes issues with every profile of the generated
// sigil.yaml for every key type the CLI generates and checks each chain.
func TestCLIIssueProfilesAndKeyTypes(t *testing.T) {
	t.Parallel()
	inProcess(t)
	c := initCA(t)
	p := startServe(t, c)
	ekus := map[string][]x509.ExtKeyUsage{
		"tls-server":        {x509.ExtKeyUsageServerAuth},
		"tls-client":        {x509.ExtKeyUsageClientAuth},
		"tls-server-client": {x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, profile := range []string{"tls-server", "tls-client", "tls-server-client"} {
		for _, kt := range []string{"ecdsa-p256", "ecdsa-p384", "rsa-2048", "ed25519"} {
			t.Run(profile+"/"+kt, func(t *testing.T) {
				keyOut := filepath.Join(t.TempDir(), "k.pem")
				out, _ := e2eRun(t, e2eAdmin(p, c, "cert", "issue", "--san", "host.example", "--profile", profile,
					"--key-type", kt, "--key-out", keyOut)...)
				chain := e2eParseChain(t, []byte(out))
				e2eVerifyChain(t, c, chain, "host.example", ekus[profile]...)
				leaf := chain[0]
				if !e2eSamePublicKey(e2eKeyFile(t, keyOut).Public(), leaf.PublicKey) {
					t.Error("key file does not match the leaf")
				}
				if _, isRSA := leaf.PublicKey.(*rsa.PublicKey); !isRSA && leaf.KeyUsage&(x509.KeyUsageKeyEncipherment|x509.KeyUsageDataEncipherment) != 0 {
					t.Errorf("%s leaf has key/data encipherment usage", kt)
				}
				if leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
					t.Error("leaf lacks digitalSignature")
				}
			})
		}
	}
}

// ---------------------------------------------------------------------------
// sigil cert show / cert list

func TestCLICertShowAndList(t *testing.T) {
	t.Parallel()
	inProcess(t)
	c := initCA(t)
	p := startServe(t, c)
	a := e2eIssueSAN(t, p, c, "tls-server", "a.example", "10.0.0.5")[0]
	b := e2eIssueSAN(t, p, c, "tls-client", "b.example")[0]
	d := e2eIssueSAN(t, p, c, "tls-server", "d.example")[0]

	t.Run("show table", func(t *testing.T) {
		out, _ := e2eRun(t, e2eAdmin(p, c, "cert", "show", e2eSerial(a))...)
		fields := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				t.Fatalf("cert show line %q is not \"field: value\"", line)
			}
			fields[k] = strings.TrimSpace(v)
		}
		want := map[string]string{"serial": e2eSerial(a), "status": "valid", "subject": "CN=a.example",
			"sans": "a.example, 10.0.0.5", "profile": "tls-server", "key": "ecdsa-p256", "channel": "api",
			"not after": a.NotAfter.UTC().Format(time.RFC3339)}
		for k, v := range want {
			if fields[k] != v {
				t.Errorf("cert show %s = %q, want %q\n%s", k, fields[k], v, out)
			}
		}
		if !strings.HasPrefix(fields["requester"], "token:") {
			t.Errorf("requester %q, want token:ID", fields["requester"])
		}
	})

	t.Run("show json", func(t *testing.T) {
		out, _ := e2eRun(t, e2eAdmin(p, c, "cert", "show", e2eSerial(b), "--format", "json")...)
		var got api.Certificate
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("cert show --format json: %v\n%s", err, out)
		}
		if got.Serial != e2eSerial(b) || got.Profile != "tls-client" || got.Status != "valid" || !slices.Equal(got.SANs, []string{"b.example"}) {
			t.Errorf("cert show json = %+v", got)
		}
		if !got.NotAfter.Equal(b.NotAfter) || !got.NotBefore.Equal(b.NotBefore) {
			t.Errorf("validity %v..%v, certificate says %v..%v", got.NotBefore, got.NotAfter, b.NotBefore, b.NotAfter)
		}
	})

	t.Run("show pem", func(t *testing.T) {
		out, _ := e2eRun(t, e2eAdmin(p, c, "cert", "show", e2eSerial(d), "--pem")...)
		chain := e2eParseChain(t, []byte(out))
		if len(chain) != 1 || !bytes.Equal(chain[0].Raw, d.Raw) {
			t.Errorf("cert show --pem is not the issued certificate:\n%s", out)
		}
	})

	t.Run("show unknown", func(t *testing.T) {
		line := e2eFail(t, e2eAdmin(p, c, "cert", "show", "abcdef0123456789")...)
		if !strings.Contains(line, "not_found") && !strings.Contains(strings.ToLower(line), "no certificate") {
			t.Errorf("unclear error: %s", line)
		}
	})

	all := e2eListCerts(t, p, c)
	if len(all) < 3 {
		t.Fatalf("cert list shows %d certificates", len(all))
	}

	t.Run("list table aligned", func(t *testing.T) {
		out, _ := e2eRun(t, e2eAdmin(p, c, "cert", "list", "--all")...)
		lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
		header := []string{"SERIAL", "SUBJECT", "SANS", "PROFILE", "STATUS", "ISSUED", "NOT AFTER", "REQUESTER"}
		starts := make([]int, len(header))
		for i, h := range header {
			starts[i] = strings.Index(lines[0], h)
			if starts[i] < 0 || (i > 0 && starts[i] <= starts[i-1]) {
				t.Fatalf("header %q lacks %s in order", lines[0], h)
			}
		}
		if starts[0] != 0 {
			t.Errorf("header does not start at column 0: %q", lines[0])
		}
		if len(lines)-1 != len(all) {
			t.Fatalf("table has %d rows, json has %d certificates", len(lines)-1, len(all))
		}
		for r, line := range lines[1:] {
			cert := all[r]
			want := []string{cert.Serial, cert.Subject, strings.Join(cert.SANs, ","), cert.Profile, cert.Status, fmtTime(cert.Issued),
				fmtTime(cert.NotAfter), cert.Requester}
			for i, s := range starts {
				end := len(line)
				if i+1 < len(starts) {
					end = min(starts[i+1], len(line))
				}
				if s > len(line) {
					t.Errorf("row %d is shorter than column %s: %q", r, header[i], line)
					break
				}
				if s > 0 && line[s-1] != ' ' {
					t.Errorf("row %d: column %s does not start at %d: %q", r, header[i], s, line)
				}
				if got := strings.TrimRight(line[s:end], " "); got != want[i] {
					t.Errorf("row %d column %s = %q, want %q (misaligned?)\n%s\n%s", r, header[i], got, want[i], lines[0], line)
				}
			}
		}
	})

	t.Run("list csv", func(t *testing.T) {
		out, _ := e2eRun(t, e2eAdmin(p, c, "cert", "list", "--all", "--format", "csv")...)
		recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
		if err != nil {
			t.Fatalf("csv: %v\n%s", err, out)
		}
		if want := []string{"SERIAL", "SUBJECT", "SANS", "PROFILE", "STATUS", "ISSUED", "NOT AFTER", "REQUESTER"}; !slices.Equal(recs[0], want) {
			t.Errorf("csv header %v, want %v", recs[0], want)
		}
		if len(recs)-1 != len(all) {
			t.Fatalf("csv has %d rows, json %d", len(recs)-1, len(all))
		}
		for i, r := range recs[1:] {
			if r[0] != all[i].Serial || r[2] != strings.Join(all[i].SANs, ",") {
				t.Errorf("csv row %d = %v, json says %s %v", i, r, all[i].Serial, all[i].SANs)
			}
		}
	})

	serials := func(cs []api.Certificate) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.Serial)
		}
		slices.Sort(out)
		return out
	}
	sorted := func(s ...string) []string { slices.Sort(s); return s }
	for _, tc := range []struct {
		name    string
		filters []string
		want    []string
	}{
		{"name", []string{"--name", "b.example"}, []string{e2eSerial(b)}},
		{"name substring of SAN", []string{"--name", "10.0.0"}, []string{e2eSerial(a)}},
		{"profile", []string{"--profile", "tls-client"}, []string{e2eSerial(b)}},
		{"profile and name", []string{"--profile", "tls-server", "--name", "d.example"}, []string{e2eSerial(d)}},
		{"serial", []string{"--serial", e2eSerial(d)}, []string{e2eSerial(d)}},
		{"status revoked", []string{"--status", "revoked"}, nil},
		{"status valid", []string{"--status", "valid"}, serials(all)},
		{"name none", []string{"--name", "nothing.invalid"}, nil},
		{"name exact", []string{"--name-exact", "B.EXAMPLE"}, []string{e2eSerial(b)}},
		{"name suffix", []string{"--name-suffix", "d.example", "--channel", "api"}, []string{e2eSerial(d)}},
		{"channel", []string{"--channel", "acme"}, nil},
	} {
		t.Run("filter "+tc.name, func(t *testing.T) {
			got := serials(e2eListCerts(t, p, c, tc.filters...))
			if !slices.Equal(got, sorted(tc.want...)) {
				t.Errorf("cert list %v = %v, want %v", tc.filters, got, tc.want)
			}
		})
	}

	t.Run("sort", func(t *testing.T) {
		got := e2eListCerts(t, p, c, "--sort", "issued_asc", "--limit", "1")
		want := slices.Clone(all)
		slices.Reverse(want)
		if !slices.Equal(serialsInOrder(got), serialsInOrder(want)) {
			t.Errorf("--sort issued_asc = %v, want %v", serialsInOrder(got), serialsInOrder(want))
		}
	})
	t.Run("summary", func(t *testing.T) {
		out, _ := e2eRun(t, e2eAdmin(p, c, "cert", "summary", "--by", "profile", "--format", "json")...)
		var sum api.CertificateSummary
		if err := json.Unmarshal([]byte(out), &sum); err != nil {
			t.Fatalf("summary json: %v\n%s", err, out)
		}
		counts := map[string]int64{}
		for _, c := range all {
			counts[c.Profile]++
		}
		if sum.Total != int64(len(all)) || len(sum.Groups) != len(counts) {
			t.Fatalf("summary %+v, want %v", sum, counts)
		}
		for _, g := range sum.Groups {
			if counts[g.Key] != g.Count {
				t.Errorf("profile %s: %d, want %d", g.Key, g.Count, counts[g.Key])
			}
		}
		table, _ := e2eRun(t, e2eAdmin(p, c, "cert", "summary", "--by", "status", "--status", "valid")...)
		if !strings.HasPrefix(table, "STATUS") || !strings.Contains(table, "valid") || !strings.Contains(table, "total") {
			t.Errorf("summary table:\n%s", table)
		}
		e2eFail(t, e2eAdmin(p, c, "cert", "summary", "--by", "colour")...)
	})
	t.Run("bad filter", func(t *testing.T) {
		line := e2eFail(t, e2eAdmin(p, c, "cert", "list", "--status", "bogus")...)
		if !strings.Contains(line, "bogus") {
			t.Errorf("error does not name the bad status: %s", line)
		}
		e2eFail(t, e2eAdmin(p, c, "cert", "list", "--format", "xml")...)
	})
}

// ---------------------------------------------------------------------------
// Refusals

func TestCLIRefusals(t *testing.T) {
	t.Parallel()
	inProcess(t)
	c := initCA(t)
	p := startServe(t, c)
	dir := t.TempDir()
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	garbage := make([]byte, 700)
	_, _ = rand.Read(garbage)
	for _, tc := range []struct {
		name    string
		csr     []byte
		explain string // a word the one error line must contain
	}{
		{"cn only", e2eCSR(t, e2eP256(t), "cn-only.example"), "common name"},
		{"disallowed ip", e2eCSR(t, e2eP256(t), "", "8.8.8.8"), "8.8.8.8"},
		{"rsa 1024", e2eCSR(t, rsa1024, "weak.example", "weak.example"), "1024"},
		{"garbage", garbage, "csr"},
		{"garbage pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte("not a csr at all")}), "csr"},
		{"certificate instead of csr", func() []byte { d, _ := os.ReadFile(c.root); return d }(), "certificate request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e2eListCerts(t, p, c)
			refusedBefore := len(e2eListAudit(t, p, c, "--action", "request.refused"))
			path := e2eWriteFile(t, dir, strings.ReplaceAll(tc.name, " ", "-")+".csr", tc.csr)
			line := e2eFail(t, e2eAdmin(p, c, "cert", "issue", "--csr", path, "--profile", "tls-server", "--out", filepath.Join(dir, "never.pem"))...)
			if !strings.Contains(strings.ToLower(line), strings.ToLower(tc.explain)) {
				t.Errorf("error line does not mention %q: %s", tc.explain, line)
			}
			if _, err := os.Stat(filepath.Join(dir, "never.pem")); err == nil {
				t.Error("a refused request wrote --out")
			}
			after := e2eListCerts(t, p, c)
			if len(after) != len(before) {
				t.Errorf("refused request left a certificate: %d -> %d", len(before), len(after))
			}
			// DESIGN.md: refused requests are audited.
			if refused := len(e2eListAudit(t, p, c, "--action", "request.refused")); refused != refusedBefore+1 {
				t.Errorf("request.refused events %d -> %d, want one more", refusedBefore, refused)
			}
		})
	}

	t.Run("disallowed name with key-out writes no key", func(t *testing.T) {
		before := e2eListCerts(t, p, c)
		refusedBefore := len(e2eListAudit(t, p, c, "--action", "request.refused"))
		keyOut := filepath.Join(dir, "never.key")
		line := e2eFail(t, e2eAdmin(p, c, "cert", "issue", "--san", "8.8.8.8", "--profile", "tls-server", "--key-out", keyOut)...)
		if !strings.Contains(line, "8.8.8.8") {
			t.Errorf("error does not name the address: %s", line)
		}
		if _, err := os.Stat(keyOut); err == nil {
			t.Error("a refused request wrote --key-out")
		}
		if after := e2eListCerts(t, p, c); len(after) != len(before) {
			t.Errorf("refused request left a certificate")
		}
		if refused := len(e2eListAudit(t, p, c, "--action", "request.refused")); refused != refusedBefore+1 {
			t.Errorf("request.refused events %d -> %d, want one more", refusedBefore, refused)
		}
	})

	t.Run("unknown profile", func(t *testing.T) {
		e2eFail(t, e2eAdmin(p, c, "cert", "issue", "--san", "x.example", "--profile", "nope", "--key-out", filepath.Join(dir, "x.key"))...)
	})
}

func serialsInOrder(cs []api.Certificate) []string {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.Serial)
	}
	return out
}
