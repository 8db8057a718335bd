package api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/audit"
)

// refRoot is RFC 9162 §2.1.1's Merkle tree hash over raw leaves, written
// out recursively in the test: the server's roots and proofs come from
// stored nodes and compact ranges, this from nothing but the definition.
func refRoot(leaves [][]byte) []byte {
	switch n := len(leaves); n {
	case 0:
		s := sha256.Sum256(nil)
		return s[:]
	case 1:
		s := sha256.Sum256(append([]byte{0}, leaves[0]...))
		return s[:]
	default:
		k := 1
		for k*2 < n {
			k *= 2
		}
		s := sha256.Sum256(append(append([]byte{1}, refRoot(leaves[:k])...), refRoot(leaves[k:])...))
		return s[:]
	}
}

func (e *testEnv) signHead(t *testing.T) api.TreeHead {
	t.Helper()
	e.clk.Advance(time.Second)
	if _, _, err := e.auth.Log().SignTreeHead(context.Background(), ca.TreeHeadMaxAge); err != nil {
		t.Fatal(err)
	}
	var h api.TreeHead
	e.getJSON(t, "GET", "/v1/log/sth", e.admin, nil, http.StatusOK, &h)
	if _, err := ca.VerifySignedTreeHead(h.Signed().TreeHead, h.SignerCertificate, e.root); err != nil {
		t.Fatalf("served head of size %d does not verify against the root: %v", h.TreeSize, err)
	}
	return h
}

func TestLogEndpoints(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	auditor := e.auditorToken(t)
	issuer, _ := e.createToken(t, ca.RoleIssuer, "tls-server")

	resp, data := e.do(t, "GET", "/v1/log/sth", auditor, nil)
	checkError(t, resp, data, http.StatusNotFound, "not_found") // nothing signed yet

	var serials []string
	var heads []api.TreeHead
	for round := range 4 {
		for i := range 5 {
			serials = append(serials, e.sign(t, e.admin, "tls-server", fmt.Sprintf("r%d-%d.example.com", round, i)).Serial)
		}
		heads = append(heads, e.signHead(t))
	}
	latest := heads[len(heads)-1]

	// Every leaf, paged, and the root recomputed from them by the test.
	var leaves [][]byte
	for start := uint64(0); start < latest.TreeSize; {
		var page api.LogEntries
		e.getJSON(t, "GET", fmt.Sprintf("/v1/log/entries?start=%d&end=%d", start, start+7), auditor, nil, http.StatusOK, &page)
		for _, le := range page.Entries {
			if le.Index != uint64(len(leaves)) {
				t.Fatalf("entry index %d, want %d", le.Index, len(leaves))
			}
			if _, _, err := audit.ParseLogLeaf(le.Leaf); err != nil {
				t.Fatalf("leaf %d: %v", le.Index, err)
			}
			leaves = append(leaves, le.Leaf)
		}
		start = page.End
	}
	for _, h := range heads {
		if got := refRoot(leaves[:h.TreeSize]); !bytes.Equal(got, h.RootHash) {
			t.Fatalf("head of size %d has root %x, the reference computes %x", h.TreeSize, h.RootHash, got)
		}
		var old api.TreeHead
		e.getJSON(t, "GET", fmt.Sprintf("/v1/log/sth?size=%d", h.TreeSize), auditor, nil, http.StatusOK, &old)
		if !bytes.Equal(old.Signature, h.Signature) {
			t.Errorf("stored head of size %d differs from the one served then", h.TreeSize)
		}
	}

	rng := mrand.New(mrand.NewPCG(5, 6))
	for range 15 {
		serial := serials[rng.IntN(len(serials))]
		var p api.InclusionProof
		e.getJSON(t, "GET", "/v1/log/proof/inclusion?serial="+serial, auditor, nil, http.StatusOK, &p)
		if p.TreeSize != latest.TreeSize || !bytes.Equal(p.Leaf, leaves[p.LeafIndex]) {
			t.Fatalf("inclusion of %s: tree %d, leaf %d mismatched", serial, p.TreeSize, p.LeafIndex)
		}
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, p.LeafIndex, p.TreeSize, audit.LeafHash(p.Leaf), p.AuditPath, latest.RootHash); err != nil {
			t.Errorf("inclusion of %s does not verify: %v", serial, err)
		}
		// And in an older tree that already held it.
		for _, h := range heads {
			if h.TreeSize <= p.LeafIndex {
				continue
			}
			var q api.InclusionProof
			e.getJSON(t, "GET", fmt.Sprintf("/v1/log/proof/inclusion?serial=%s&tree_size=%d", serial, h.TreeSize), auditor, nil, http.StatusOK, &q)
			if err := proof.VerifyInclusion(rfc6962.DefaultHasher, q.LeafIndex, h.TreeSize, audit.LeafHash(q.Leaf), q.AuditPath, h.RootHash); err != nil {
				t.Errorf("inclusion of %s in tree %d: %v", serial, h.TreeSize, err)
			}
			break
		}
	}
	for range 15 {
		s2 := 1 + rng.Uint64N(latest.TreeSize)
		s1 := rng.Uint64N(s2 + 1)
		var p api.ConsistencyProof
		e.getJSON(t, "GET", fmt.Sprintf("/v1/log/proof/consistency?first=%d&second=%d", s1, s2), auditor, nil, http.StatusOK, &p)
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, s1, s2, p.Proof, refRoot(leaves[:s1]), refRoot(leaves[:s2])); err != nil {
			t.Errorf("consistency %d → %d: %v", s1, s2, err)
		}
	}

	for _, c := range []struct {
		path   string
		token  string
		status int
		kind   string
	}{
		{"/v1/log/sth?size=abc", auditor, 400, "malformed"},
		{"/v1/log/sth?size=-1", auditor, 400, "malformed"},
		{"/v1/log/sth?size=3", auditor, 404, "not_found"},
		{"/v1/log/sth?sise=3", auditor, 400, "malformed"},
		{"/v1/log/proof/inclusion", auditor, 400, "malformed"},
		{"/v1/log/proof/inclusion?serial=xyz", auditor, 400, "malformed"},
		{"/v1/log/proof/inclusion?serial=" + serials[0] + "&tree_size=0", auditor, 400, "malformed"},
		{"/v1/log/proof/inclusion?serial=" + serials[0] + "&tree_size=%2B5", auditor, 400, "malformed"},
		{"/v1/log/proof/inclusion?serial=" + serials[0] + "&tree_size=99999", auditor, 404, "not_found"},
		{"/v1/log/proof/inclusion?serial=" + serials[len(serials)-1] + fmt.Sprintf("&tree_size=%d", heads[0].TreeSize), auditor, 404, "not_found"},
		{"/v1/log/proof/inclusion?serial=abcdef", auditor, 404, "not_found"},
		{"/v1/log/proof/consistency?first=5", auditor, 400, "malformed"},
		{"/v1/log/proof/consistency?first=5&second=3", auditor, 400, "malformed"},
		{"/v1/log/proof/consistency?first=1&second=99999999999999999999", auditor, 400, "malformed"},
		{"/v1/log/proof/consistency?first=1&second=99999", auditor, 404, "not_found"},
		{"/v1/log/entries", auditor, 400, "malformed"},
		{"/v1/log/entries?start=0&end=5000", auditor, 400, "malformed"},
		{"/v1/log/entries?start=5&end=5", auditor, 400, "malformed"},
		{"/v1/log/entries?start=99999", auditor, 404, "not_found"},
		{"/v1/log/sth", issuer, 403, "forbidden"},
		{"/v1/log/entries?start=0", issuer, 403, "forbidden"},
	} {
		resp, data := e.do(t, "GET", c.path, c.token, nil)
		checkError(t, resp, data, c.status, c.kind)
	}
	resp, data = e.do(t, "POST", "/v1/log/sth", e.admin, nil)
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /v1/log/sth: %d %s, want 405", resp.StatusCode, data)
	}
}

// FuzzParseLogQuery: the /v1/log query parsers never panic, refuse only
// with a Malformed *ca.Error, and what they accept is in range.
func FuzzParseLogQuery(f *testing.F) {
	for _, s := range []string{
		"size=10", "size=", "size=-1", "size=1&size=2", "serial=0a1b&tree_size=7", "serial=zz",
		"first=0&second=0", "first=3&second=2", "start=0&end=1000", "start=0&end=1001", "start=9223372036854775807",
		"start=18446744073709551615", "end=%00", "tree_size=+5", "tree_size=0x10", "first=1&second=2&x=3", "%zz",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		malformedOnly := func(err error) {
			if err != nil && ca.KindOf(err) != ca.Malformed {
				t.Fatalf("%q: %v is not Malformed", raw, err)
			}
		}
		h, err := api.ParseTreeHeadQuery(q)
		malformedOnly(err)
		if err == nil && h.Latest && h.Size != 0 {
			t.Fatalf("%q: latest with size %d", raw, h.Size)
		}
		inc, err := api.ParseInclusionQuery(q)
		malformedOnly(err)
		if err == nil && (inc.Serial == "" || inc.TreeSize > 1<<63-1) {
			t.Fatalf("%q: accepted %+v", raw, inc)
		}
		first, second, err := api.ParseConsistencyQuery(q)
		malformedOnly(err)
		if err == nil && (first > second || second > 1<<63-1) {
			t.Fatalf("%q: accepted first %d second %d", raw, first, second)
		}
		start, end, err := api.ParseEntriesQuery(q)
		malformedOnly(err)
		if err == nil && (end <= start || end-start > 1000 || end > 1<<63-1) {
			t.Fatalf("%q: accepted [%d, %d)", raw, start, end)
		}
	})
}
