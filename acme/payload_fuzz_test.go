package acme

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/internal/testclock"
	"github.com/sigil-ca/sigil/store"
)

// The newOrder and finalize payloads are untrusted input that reaches
// parsers (JSON, identifiers, base64url, CSR DER) once the JWS verifies
// (STYLE.md Tests: fuzz every parser of untrusted input). Seeds: the
// f.Add calls below and testdata/fuzz/<FuzzName>/, where a file named
// valid-* must be accepted and any other must be refused
// (TestFuzzPayloadCorpus).

// FuzzNewOrderPayload runs a newOrder payload through what newOrder does
// before it writes anything: decodePayload, the notBefore/notAfter check,
// normalizeIdentifiers and the profile's name policy. Nothing panics, every
// refusal is a client error of an expected type, and accepted identifiers
// are lower-case, of type dns or ip, canonical and distinct.
func FuzzNewOrderPayload(f *testing.F) {
	for _, seed := range []string{
		`{"identifiers":[{"type":"dns","value":"www.allowed.test"},{"type":"ip","value":"127.0.0.1"}]}`,
		`{"identifiers":[{"type":"dns","value":" WWW.Allowed.TEST "},{"type":"dns","value":"www.allowed.test"},{"type":"ip","value":"::ffff:127.0.0.1"}]}`,
		`{"identifiers":[{"type":"ip","value":"::1"},{"type":"ip","value":"0:0::1"}]}`,
		`{"identifiers":[{"type":"dns","value":"*.allowed.test"}]}`,
		`{"identifiers":[{"type":"dns","value":"evil.test"},{"type":"ip","value":"10.0.0.1"}]}`,
		`{"identifiers":[{"type":"dns","value":"127.0.0.1"}]}`,
		`{"identifiers":[{"type":"email","value":"a@allowed.test"}]}`,
		`{"identifiers":[{"type":"dns","value":"a..allowed.test"}]}`,
		`{"identifiers":[],"notBefore":"2030-01-01T00:00:00Z"}`,
		`{"identifiers":{"type":"dns"}}`,
		`{"identifiers":null}`,
		`null`,
		`[]`,
		``,
	} {
		f.Add([]byte(seed))
	}
	_, auth := testAuthority(f, restrictedProfiles(), testclock.New())
	f.Fuzz(func(t *testing.T, payload []byte) {
		_, _ = checkNewOrderPayload(t, auth, payload)
	})
}

// checkNewOrderPayload checks the newOrder pipeline's invariants on payload
// and returns the identifiers or the refusal.
func checkNewOrderPayload(t testing.TB, auth *ca.Authority, payload []byte) ([]store.ACMEIdentifier, error) {
	t.Helper()
	var req newOrderReq
	if err := decodePayload(payload, &req); err != nil {
		wantPayloadProblem(t, err, TypeMalformed)
		return nil, err
	}
	if req.NotBefore != "" || req.NotAfter != "" {
		return nil, Malformed("notBefore and notAfter are not supported")
	}
	ids, err := normalizeIdentifiers(req.Identifiers)
	if err != nil {
		wantPayloadProblem(t, err, TypeMalformed, TypeRejectedIdentifier, TypeUnsupportedIdentifier)
		if ids != nil {
			t.Fatalf("identifiers %v with error %v", ids, err)
		}
		return nil, err
	}
	if len(ids) == 0 || len(ids) > len(req.Identifiers) || len(ids) > maxIdentifiers {
		t.Fatalf("%d identifiers from %d", len(ids), len(req.Identifiers))
	}
	seen := map[store.ACMEIdentifier]bool{}
	var dns []string
	var ips []net.IP
	for _, id := range ids {
		if seen[id] {
			t.Fatalf("duplicate identifier %v in %v", id, ids)
		}
		seen[id] = true
		if id.Value != strings.ToLower(id.Value) {
			t.Fatalf("identifier %q is not lower-case", id.Value)
		}
		switch id.Type {
		case "dns":
			if net.ParseIP(id.Value) != nil {
				t.Fatalf("dns identifier %q is an IP address", id.Value)
			}
			if strings.TrimSpace(id.Value) != id.Value {
				t.Fatalf("dns identifier %q has surrounding space", id.Value)
			}
			dns = append(dns, id.Value)
		case "ip":
			ip := net.ParseIP(id.Value)
			if ip == nil || ip.String() != id.Value {
				t.Fatalf("ip identifier %q is not canonical", id.Value)
			}
			ips = append(ips, ip)
		default:
			t.Fatalf("identifier type %q accepted", id.Type)
		}
	}
	// Normalizing is idempotent: the stored form is its own normal form.
	again := make([]Identifier, len(ids))
	for i, id := range ids {
		again[i] = Identifier{Type: id.Type, Value: id.Value}
	}
	if ids2, err := normalizeIdentifiers(again); err != nil || !slices.Equal(ids2, ids) {
		t.Fatalf("normalizing %v again gave %v, %v", ids, ids2, err)
	}
	if err := auth.CheckNames("restricted", dns, ips); err != nil {
		var ce *ca.Error
		if !errors.As(err, &ce) || (ce.Kind != ca.Malformed && ce.Kind != ca.Rejected) {
			t.Fatalf("CheckNames error %v (%T): want a Malformed or Rejected *ca.Error", err, err)
		}
		p := FromError(err)
		if p.Status != 400 || (p.Type != TypeMalformed && p.Type != TypeRejectedIdentifier) {
			t.Fatalf("CheckNames error %v becomes %+v", err, p)
		}
		return nil, err
	}
	return ids, nil
}

// wantPayloadProblem fails unless err is a *Problem of one of types with
// status 400.
func wantPayloadProblem(t testing.TB, err error, types ...string) {
	t.Helper()
	p, ok := err.(*Problem)
	if !ok {
		t.Fatalf("error %v is a %T, not a *Problem", err, err)
	}
	if !slices.Contains(types, p.Type) || p.Status != 400 || p.Detail == "" {
		t.Fatalf("problem %+v: want one of %v, status 400, a detail", p, types)
	}
}

// finalizeFuzzOrder is the order FuzzFinalizePayload's CSRs are matched
// against.
var finalizeFuzzOrder = []Identifier{
	{Type: "dns", Value: "example.test"},
	{Type: "dns", Value: "www.example.test"},
	{Type: "ip", Value: "127.0.0.1"},
	{Type: "ip", Value: "2001:db8::1"},
}

// FuzzFinalizePayload runs a finalize payload through what finalize does
// before it signs: decodePayload, base64url, ca.ParseCSR and
// csrMatchesOrder. Nothing panics, every refusal is malformed or badCSR
// (a *Problem, or a *ca.Error of kind BadCSR), and an accepted CSR names
// exactly the order's identifiers.
func FuzzFinalizePayload(f *testing.F) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	csr := func(tmpl *x509.CertificateRequest) []byte {
		der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
		if err != nil {
			f.Fatal(err)
		}
		return []byte(`{"csr":"` + base64.RawURLEncoding.EncodeToString(der) + `"}`)
	}
	ips := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("2001:db8::1")}
	for _, seed := range [][]byte{
		csr(&x509.CertificateRequest{DNSNames: []string{"example.test", "www.example.test"}, IPAddresses: ips}),
		csr(&x509.CertificateRequest{DNSNames: []string{"Example.TEST.", "www.example.test", "example.test"}, IPAddresses: ips}),
		csr(&x509.CertificateRequest{DNSNames: []string{"example.test", "www.example.test", "evil.test"}, IPAddresses: ips}),
		csr(&x509.CertificateRequest{DNSNames: []string{"example.test"}, IPAddresses: ips}),
		csr(&x509.CertificateRequest{DNSNames: []string{"example.test", "www.example.test"}, IPAddresses: ips, EmailAddresses: []string{"a@example.test"}}),
		[]byte(`{"csr":"MIIB"}`),
		[]byte(`{"csr":"not base64url!"}`),
		[]byte(`{"csr":12}`),
		[]byte(`{}`),
		[]byte(`null`),
		[]byte(``),
	} {
		f.Add(seed)
	}
	order, err := normalizeIdentifiers(finalizeFuzzOrder)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		_ = checkFinalizePayload(t, order, payload)
	})
}

// checkFinalizePayload checks the finalize pipeline's invariants on payload
// and returns its refusal, if any.
func checkFinalizePayload(t testing.TB, order []store.ACMEIdentifier, payload []byte) error {
	t.Helper()
	var req finalizeReq
	if err := decodePayload(payload, &req); err != nil {
		wantPayloadProblem(t, err, TypeMalformed)
		return err
	}
	der, err := base64.RawURLEncoding.DecodeString(req.CSR)
	if err != nil {
		return BadCSR("csr is not base64url (no padding)") // as finalize answers
	}
	csr, err := ca.ParseCSR(der)
	if err != nil {
		var ce *ca.Error
		if !errors.As(err, &ce) || ce.Kind != ca.BadCSR {
			t.Fatalf("ParseCSR error %v (%T): want a BadCSR *ca.Error", err, err)
		}
		if p := FromError(err); p.Type != TypeBadCSR || p.Status != 400 {
			t.Fatalf("ParseCSR error %v becomes %+v", err, p)
		}
		if csr != nil {
			t.Fatal("a CSR and an error")
		}
		return err
	}
	if err := csrMatchesOrder(csr, order); err != nil {
		wantPayloadProblem(t, err, TypeBadCSR)
		return err
	}
	// Accepted: the CSR asks for the order's identifiers and nothing else.
	want := map[string]bool{}
	for _, id := range order {
		want[id.Type+":"+id.Value] = false
	}
	if len(csr.EmailAddresses) > 0 || len(csr.URIs) > 0 {
		t.Fatalf("accepted a CSR with email addresses %v or URIs %v", csr.EmailAddresses, csr.URIs)
	}
	var got []string
	for _, d := range csr.DNSNames {
		got = append(got, "dns:"+strings.ToLower(strings.TrimSuffix(d, ".")))
	}
	for _, ip := range csr.IPAddresses {
		got = append(got, "ip:"+ip.String())
	}
	for _, g := range got {
		if _, ok := want[g]; !ok {
			t.Fatalf("accepted a CSR naming %s, not in the order %v", g, order)
		}
		want[g] = true
	}
	for id, named := range want {
		if !named {
			t.Fatalf("accepted a CSR (%v) that does not name %s", got, id)
		}
	}
	return nil
}

// TestFuzzPayloadCorpus keeps the checked-in seeds meaningful: valid-*
// files are accepted, the others refused.
func TestFuzzPayloadCorpus(t *testing.T) {
	t.Parallel()
	_, auth := testAuthority(t, restrictedProfiles(), testclock.New())
	order, err := normalizeIdentifiers(finalizeFuzzOrder)
	if err != nil {
		t.Fatal(err)
	}
	for fuzz, check := range map[string]func(t *testing.T, payload []byte) error{
		"FuzzNewOrderPayload": func(t *testing.T, payload []byte) error {
			_, err := checkNewOrderPayload(t, auth, payload)
			return err
		},
		"FuzzFinalizePayload": func(t *testing.T, payload []byte) error {
			return checkFinalizePayload(t, order, payload)
		},
	} {
		dir := filepath.Join("testdata", "fuzz", fuzz)
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) < 2 {
			t.Fatalf("%s: %d seeds", dir, len(entries))
		}
		for _, e := range entries {
			t.Run(fuzz+"/"+e.Name(), func(t *testing.T) {
				raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
				if err != nil {
					t.Fatal(err)
				}
				lit, ok := strings.CutPrefix(strings.TrimSpace(string(raw)), "go test fuzz v1\n[]byte(")
				lit, ok2 := strings.CutSuffix(lit, ")")
				if !ok || !ok2 {
					t.Fatalf("not a one-[]byte corpus file: %q", raw)
				}
				payload, err := strconv.Unquote(lit)
				if err != nil {
					t.Fatal(err)
				}
				err = check(t, []byte(payload))
				if valid := strings.HasPrefix(e.Name(), "valid-"); valid != (err == nil) {
					t.Errorf("seed refused with %v; valid-* seeds must be accepted and only they", err)
				}
			})
		}
	}
}
