package ca

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	_ "modernc.org/sqlite"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/store"
)

// issueN signs n certificates through the authority and returns their serials.
func issueN(t *testing.T, tc *testCA, n int) []string {
	t.Helper()
	key := mustKey(t, keystore.ECDSAP256)
	var serials []string
	for i := range n {
		name := fmt.Sprintf("h%d.example.com", i)
		iss, err := tc.Sign(context.Background(), SignRequest{CSR: newCSR(t, key, name, name), Profile: "tls-server", Requester: "test", Channel: ChannelAPI})
		if err != nil {
			t.Fatal(err)
		}
		serials = append(serials, iss.Record.Serial)
	}
	return serials
}

// rawDB opens the test CA's database file behind the store's back, as an
// attacker with write access to the file would.
func rawDB(t *testing.T, tc *testCA) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+tc.dbPath+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestLogInclusionAndConsistency(t *testing.T) {
	ctx := context.Background()
	tc := newTestCA(t, keystore.ECDSAP256, keystore.ECDSAP256)
	// Init recorded the root, intermediate and audit signer: leaves 0..2.
	var heads []SignedTreeHead
	var serials []string
	for range 4 {
		serials = append(serials, issueN(t, tc, 6)...)
		tc.clk.Advance(time.Minute)
		h, signed, err := tc.Log().SignTreeHead(ctx, TreeHeadMaxAge)
		if err != nil || !signed {
			t.Fatalf("SignTreeHead = %v, %v", signed, err)
		}
		if _, err := VerifySignedTreeHead(h.TreeHead, h.SignerCert, tc.init.Root); err != nil {
			t.Fatalf("head of size %d: %v", h.Size, err)
		}
		heads = append(heads, h)
	}
	if _, signed, err := tc.Log().SignTreeHead(ctx, TreeHeadMaxAge); err != nil || signed {
		t.Errorf("unchanged young tree signed again: %v, %v", signed, err)
	}
	latest := heads[len(heads)-1]
	if latest.Size != uint64(3+len(serials)) {
		t.Fatalf("latest head size %d, want %d", latest.Size, 3+len(serials))
	}
	rng := mrand.New(mrand.NewPCG(3, 4))
	for range 20 {
		serial := serials[rng.IntN(len(serials))]
		inc, err := tc.Log().InclusionProof(ctx, serial, 0)
		if err != nil {
			t.Fatal(err)
		}
		c, err := tc.Certificate(ctx, serial)
		if err != nil {
			t.Fatal(err)
		}
		leaf := audit.LogLeaf(c.Created, c.DER) // from the certificate record, not the log
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, inc.Entry.Index, inc.TreeSize,
			rfc6962.DefaultHasher.HashLeaf(leaf), inc.Proof, latest.RootHash); err != nil {
			t.Errorf("inclusion of %s (leaf %d): %v", serial, inc.Entry.Index, err)
		}
		if err := VerifyInclusion(latest.TreeHead, inc.Entry.Index, leaf, inc.Proof); err != nil {
			t.Errorf("VerifyInclusion of %s (leaf %d): %v", serial, inc.Entry.Index, err)
		}
		forged := slices.Clone(leaf)
		forged[len(forged)-1] ^= 1
		if err := VerifyInclusion(latest.TreeHead, inc.Entry.Index, forged, inc.Proof); err == nil {
			t.Errorf("VerifyInclusion accepted an altered leaf of %s", serial)
		}
	}
	for range 10 {
		i := rng.IntN(len(heads))
		j := i + rng.IntN(len(heads)-i)
		p, err := tc.Log().ConsistencyProof(ctx, heads[i].Size, heads[j].Size)
		if err != nil {
			t.Fatal(err)
		}
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, heads[i].Size, heads[j].Size, p, heads[i].RootHash, heads[j].RootHash); err != nil {
			t.Errorf("consistency %d → %d: %v", heads[i].Size, heads[j].Size, err)
		}
		if err := VerifyConsistency(heads[i].TreeHead, heads[j].TreeHead, p); err != nil {
			t.Errorf("VerifyConsistency %d → %d: %v", heads[i].Size, heads[j].Size, err)
		}
		if i != j {
			rewritten := heads[i].TreeHead
			rewritten.RootHash = slices.Clone(rewritten.RootHash)
			rewritten.RootHash[0] ^= 1
			if err := VerifyConsistency(rewritten, heads[j].TreeHead, p); err == nil {
				t.Errorf("VerifyConsistency %d → %d accepted an altered old root", heads[i].Size, heads[j].Size)
			}
		}
	}
	for _, tc2 := range []struct {
		name string
		fn   func() error
		kind Kind
	}{
		{"unknown serial", func() error { _, err := tc.Log().InclusionProof(ctx, "abcdef", 0); return err }, NotFound},
		{"tree beyond the log", func() error { _, err := tc.Log().InclusionProof(ctx, serials[0], latest.Size+1); return err }, NotFound},
		{"leaf after the tree", func() error {
			_, err := tc.Log().InclusionProof(ctx, serials[len(serials)-1], heads[0].Size)
			return err
		}, NotFound},
		{"consistency reversed", func() error { _, err := tc.Log().ConsistencyProof(ctx, 5, 4); return err }, Malformed},
		{"consistency beyond", func() error { _, err := tc.Log().ConsistencyProof(ctx, 1, latest.Size+1); return err }, NotFound},
		{"entries beyond", func() error { _, err := tc.Log().LogEntries(ctx, latest.Size+1, latest.Size+2); return err }, NotFound},
		{"head of unsigned size", func() error { _, err := tc.Log().TreeHead(ctx, 4, false); return err }, NotFound},
	} {
		if err := tc2.fn(); KindOf(err) != tc2.kind {
			t.Errorf("%s: %v, want %v", tc2.name, err, tc2.kind)
		}
	}
	rep, err := tc.Log().VerifyLog(ctx, tc.st)
	if err != nil || rep.Leaves != latest.Size || rep.Heads != len(heads) || !rep.KeysCertified {
		t.Errorf("VerifyLog = %+v, %v", rep, err)
	}
}

func TestVerifyLogTamper(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name    string
		sql     string
		leaf    string // the index the error must name
		wantMsg string
	}{
		{"certificate DER altered", "UPDATE certificates SET der = der || X'00' WHERE id = (SELECT cert_id FROM log_entries WHERE idx = 7)", "leaf 7", "leaf or certificate altered"},
		{"issuance time altered", "UPDATE certificates SET created = created + 1 WHERE id = (SELECT cert_id FROM log_entries WHERE idx = 5)", "leaf 5", "leaf or certificate altered"},
		{"leaf hash altered", "UPDATE log_entries SET leaf_hash = X'" + strings.Repeat("00", 32) + "' WHERE idx = 4", "leaf 4", "leaf or certificate altered"},
		{"leaf and certificate consistently rewritten", "", "leaf 11", "tree head of size 12"},
		{"interior node altered", fmt.Sprintf("UPDATE log_nodes SET hash = X'%s' WHERE id = %d", strings.Repeat("11", 32), store.NodeKey(1, 4)), "leaf 9", "node altered"},
		{"leaf deleted", "DELETE FROM log_entries WHERE idx = 8", "leaf 8", "leaf missing"},
		{"interior node deleted", fmt.Sprintf("DELETE FROM log_nodes WHERE id = %d", store.NodeKey(2, 1)), "leaf 7", "missing"},
		{"tail truncated", "DELETE FROM log_entries WHERE idx >= 10", "leaf 10", "leaves deleted"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tc := newTestCA(t, keystore.ECDSAP256, keystore.ECDSAP256)
			issueN(t, tc, 9) // 12 leaves with the 3 from init
			if _, _, err := tc.Log().SignTreeHead(ctx, TreeHeadMaxAge); err != nil {
				t.Fatal(err)
			}
			if rep, err := tc.Log().VerifyLog(ctx, tc.st); err != nil || rep.Leaves != 12 {
				t.Fatalf("before tampering: %+v, %v", rep, err)
			}
			db := rawDB(t, tc)
			stmts := []string{c.sql}
			if c.sql == "" {
				// A rewrite that keeps the leaf hash consistent with the
				// record (and the nodes above it) still contradicts the
				// signed head.
				e, err := tc.st.LogEntries(ctx, 6, 7)
				if err != nil {
					t.Fatal(err)
				}
				der := append([]byte{}, e[0].DER...)
				der[len(der)-1] ^= 1
				e[0].DER = der
				stmts = []string{
					fmt.Sprintf("UPDATE certificates SET der = X'%x' WHERE id = %d", der, e[0].CertID),
					fmt.Sprintf("UPDATE log_entries SET leaf_hash = X'%x' WHERE idx = 6", audit.LeafHash(e[0].Leaf())),
				}
				all, err := tc.st.LogEntries(ctx, 0, 12)
				if err != nil {
					t.Fatal(err)
				}
				all[6] = e[0]
				rf := &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
				r := rf.NewEmptyRange(0)
				for _, x := range all {
					if err := r.Append(audit.LeafHash(x.Leaf()), func(id compact.NodeID, h []byte) {
						stmts = append(stmts, fmt.Sprintf("UPDATE log_nodes SET hash = X'%x' WHERE id = %d", h, store.NodeKey(id.Level, id.Index)))
					}); err != nil {
						t.Fatal(err)
					}
				}
			}
			for _, q := range stmts {
				if _, err := db.ExecContext(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			_, err := tc.Log().VerifyLog(ctx, tc.st)
			var le *LogError
			if !errors.As(err, &le) {
				t.Fatalf("VerifyLog after tampering: %v, want a *LogError", err)
			}
			if !strings.Contains(err.Error(), c.leaf+":") || !strings.Contains(err.Error(), c.wantMsg) {
				t.Errorf("VerifyLog: %v; want %q and %q", err, c.leaf, c.wantMsg)
			}
		})
	}
}
