package audit

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
)

// exportFixture is a chain, its checkpoints, and a root that certifies the
// checkpoint key.
type exportFixture struct {
	events []Event
	cps    []Checkpoint // sorted by Seq
	roots  *x509.CertPool
	signer ExportSigner
}

// newTestCA returns a root and an audit signer certificate it issued for key.
func newTestCA(t testing.TB, key *ecdsa.PrivateKey) (*x509.Certificate, []byte) {
	t.Helper()
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	nb := testStart.Add(-time.Hour)
	rootTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test Root"},
		NotBefore: nb, NotAfter: nb.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	root, err := x509.ParseCertificate(rootDER)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "Test Audit Signer"},
		NotBefore: nb, NotAfter: nb.Add(24 * time.Hour), BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, root, key.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	return root, leafDER
}

// newExportFixture builds n events (event 7 carries bytes that are not
// UTF-8) checkpointed every 10 events and at the last one.
func newExportFixture(t testing.TB, n int) *exportFixture {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	root, leaf := newTestCA(t, key)
	fx := &exportFixture{roots: x509.NewCertPool(), signer: ExportSigner{KeyID: "audit-1", Chain: [][]byte{leaf}}}
	fx.roots.AddCert(root)
	fx.events = buildEvents(n)
	if n >= 7 {
		e := &fx.events[6]
		e.Target = "bad\xffutf8"
		e.Detail = map[string]string{"k\xfe": "v"}
		var head Head
		for i := range fx.events {
			head = Next(head, &fx.events[i])
		}
	}
	for seq := 10; seq <= n+9; seq += 10 {
		s := min(seq, n)
		e := fx.events[s-1]
		c, err := SignCheckpoint(rand.Reader, key, "audit-1", Head{Seq: e.Seq, Hash: e.Hash}, e.Time.Add(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		fx.cps = append(fx.cps, c)
	}
	return fx
}

// export writes events first..last with the checkpoints in that range.
func (fx *exportFixture) export(t testing.TB, first, last int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	x, err := NewExportWriter(&buf, ExportHeader{CA: "Test", Exported: testStart.Add(time.Hour), FirstSeq: first, LastSeq: last,
		Signers: []ExportSigner{fx.signer}})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range fx.events[first-1 : last] {
		if err := x.WriteEvent(e); err != nil {
			t.Fatal(err)
		}
		for _, c := range fx.cps {
			if c.Seq == e.Seq {
				if err := x.WriteCheckpoint(c); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestExportVerifyOK(t *testing.T) {
	t.Parallel()
	fx := newExportFixture(t, 35)
	for _, tc := range []struct {
		name        string
		first, last int64
		checkpoints int64
	}{
		{"whole log", 1, 35, 4},
		{"since mid-chain", 12, 35, 3},
		{"ends at a checkpoint", 3, 20, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := fx.export(t, tc.first, tc.last)
			sum, err := VerifyExport(bytes.NewReader(data), fx.roots)
			if err != nil {
				t.Fatalf("VerifyExport: %v", err)
			}
			if sum.FirstSeq != tc.first || sum.LastSeq != tc.last || sum.Events != tc.last-tc.first+1 ||
				sum.Checkpoints != tc.checkpoints || sum.Covered.Seq != tc.last || sum.Head.Seq != tc.last {
				t.Errorf("summary %+v", sum)
			}
			if len(sum.Signers) != 1 || sum.Signers[0].Subject.CommonName != "Test Audit Signer" || sum.CA != "Test" {
				t.Errorf("signers %v, CA %q", sum.Signers, sum.CA)
			}
		})
	}
}

// TestVerifierFrom: a Verifier started mid-chain checks the events after
// its start, ignores checkpoints it cannot check, and still catches a
// checkpoint past the end.
func TestVerifierFrom(t *testing.T) {
	t.Parallel()
	tc := newTestChain(t)
	start := Head{Seq: 20, Hash: tc.events[19].Hash}
	v := NewVerifierFrom(start, tc.checkpoints, tc.keys)
	for _, e := range tc.events[20:] {
		if err := v.Add(e); err != nil {
			t.Fatalf("Add(%d): %v", e.Seq, err)
		}
	}
	head, err := v.Finish()
	if err != nil || head.Seq != 50 || v.Count() != 30 {
		t.Fatalf("Finish = %d, %v; Count %d", head.Seq, err, v.Count())
	}
	// A wrong start hash breaks the first link.
	bad := NewVerifierFrom(Head{Seq: 20, Hash: tc.events[18].Hash}, nil, nil)
	checkVerifyError(t, "wrong start", bad.Add(tc.events[20]), 21, "prev_hash does not match")
	short := NewVerifierFrom(Head{Seq: 20, Hash: []byte{1}}, nil, nil)
	checkVerifyError(t, "short start hash", short.Add(tc.events[20]), 21, "start hash is 1 bytes")
	// Truncation after the start is still caught.
	v = NewVerifierFrom(start, tc.checkpoints, tc.keys)
	for _, e := range tc.events[20:40] {
		if err := v.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	_, err = v.Finish()
	checkVerifyError(t, "cut tail", err, 41, "checkpoint covers seq 50")
}

func TestExportEmpty(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	x, err := NewExportWriter(&buf, ExportHeader{Exported: testStart})
	if err != nil {
		t.Fatal(err)
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	sum, err := VerifyExport(&buf, x509.NewCertPool())
	if err != nil || sum.Events != 0 {
		t.Fatalf("VerifyExport = %+v, %v", sum, err)
	}
}

// lines splits an export into lines without their newlines.
func lines(data []byte) []string {
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

func join(ls []string) []byte {
	return []byte(strings.Join(ls, "\n") + "\n")
}

// flipIn changes one character of line i inside the first occurrence of
// the JSON member key, leaving the line valid JSON.
func flipIn(t *testing.T, ls []string, i int, key string) []string {
	t.Helper()
	out := append([]string(nil), ls...)
	at := strings.Index(out[i], `"`+key+`":`)
	if at < 0 {
		t.Fatalf("line %d has no %q: %s", i+1, key, out[i])
	}
	at += len(key) + 4 // past "key":" to the value's first character
	if out[i][at-1] != '"' {
		at-- // a number
	}
	c := out[i][at]
	r := byte('1')
	if c == '1' {
		r = '2'
	}
	out[i] = out[i][:at] + string(r) + out[i][at+1:]
	return out
}

// replaceIn replaces old with new in line i.
func replaceIn(ls []string, i int, old, new string) []byte {
	out := append([]string(nil), ls...)
	out[i] = strings.Replace(out[i], old, new, 1)
	return join(out)
}

func TestExportTampering(t *testing.T) {
	t.Parallel()
	fx := newExportFixture(t, 25)
	// Lines: 1 header; events 1..10 on 2..11, checkpoint 10 on 12; events
	// 11..20 on 13..22, checkpoint 20 on 23; events 21..25 on 24..28,
	// checkpoint 25 on 29; end on 30.
	orig := lines(fx.export(t, 1, 25))
	if len(orig) != 30 {
		t.Fatalf("%d lines, want 30", len(orig))
	}
	remove := func(i int) []byte { return join(append(append([]string(nil), orig[:i]...), orig[i+1:]...)) }
	swap := func(i, j int) []byte {
		ls := append([]string(nil), orig...)
		ls[i], ls[j] = ls[j], ls[i]
		return join(ls)
	}
	for _, tc := range []struct {
		name     string
		data     []byte
		line     int
		seq      int64
		contains string
	}{
		{"actor changed", join(flipIn(t, orig, 5, "actor")), 6, 5, "hash mismatch"},
		{"time changed", join(flipIn(t, orig, 3, "time")), 4, 3, "hash mismatch"},
		{"detail changed", replaceIn(orig, 3, `"server"`, `"servar"`), 4, 3, "hash mismatch"},
		{"base64 field changed", join(flipIn(t, orig, 7, "target")), 8, 7, "hash mismatch"},
		{"hash changed", join(flipIn(t, orig, 14, "hash")), 15, 13, "hash mismatch"},
		{"prev_hash changed", join(flipIn(t, orig, 14, "prev_hash")), 15, 13, "prev_hash"},
		{"seq changed", join(flipIn(t, orig, 14, "seq")), 15, 23, "events 13..22 missing"},
		{"checkpoint signature changed", join(flipIn(t, orig, 11, "signature")), 12, 10, "bad checkpoint signature"},
		{"checkpoint hash changed", join(flipIn(t, orig, 22, "hash")), 23, 20, "bad checkpoint signature"},
		{"first event removed", remove(1), 2, 2, "event 1 missing"},
		{"middle event removed", remove(15), 16, 15, "event 14 missing"},
		{"last event removed", remove(27), 28, 25, "out of place"},
		{"middle checkpoint removed", remove(11), 29, 0, "end line counts"},
		{"last checkpoint removed", remove(28), 29, 25, "not covered by a checkpoint"},
		{"two events swapped", swap(15, 16), 16, 15, "event 14 is at line 17"},
		{"event and its checkpoint swapped", swap(10, 11), 11, 10, "out of place"},
		{"event moved far", swap(3, 20), 4, 19, "event 3 is at line 21"},
		{"truncated", []byte(strings.Join(orig[:20], "\n") + "\n"), 21, 0, "after event 18 (truncated)"},
		{"cut mid-line", []byte(strings.Join(orig[:20], "\n") + "\n" + orig[20][:30]), 21, 0, "not valid JSON, after event 18"},
		{"garbage line", join(append(append(append([]string(nil), orig[:9]...), "not json"), orig[9:]...)), 10, 0, "not valid JSON, after event 8"},
		{"blank line", join(append(append(append([]string(nil), orig[:9]...), ""), orig[9:]...)), 10, 0, "corrupted"},
		{"event duplicated", join(append(append(append([]string(nil), orig[:9]...), orig[8]), orig[9:]...)), 10, 8, "backwards"},
		{"header range changed", join(flipIn(t, orig, 0, "last_seq")), 1, 0, "does not hold"},
		{"data after end", join(append(append([]string(nil), orig...), orig[5])), 31, 0, "after the end"},
		{"no header", join(orig[1:]), 1, 0, "not an export header"},
		{"empty", nil, 1, 0, "empty file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := VerifyExport(bytes.NewReader(tc.data), fx.roots)
			var ee *ExportError
			if !errors.As(err, &ee) {
				t.Fatalf("VerifyExport = %v, want *ExportError", err)
			}
			if ee.Line != tc.line || ee.Seq != tc.seq || !strings.Contains(ee.Reason, tc.contains) {
				t.Errorf("got line %d seq %d %q; want line %d seq %d containing %q", ee.Line, ee.Seq, ee.Reason, tc.line, tc.seq, tc.contains)
			}
		})
	}
}

func TestExportWrongRoot(t *testing.T) {
	t.Parallel()
	fx := newExportFixture(t, 12)
	data := fx.export(t, 1, 12)
	other := newExportFixture(t, 1)
	_, err := VerifyExport(bytes.NewReader(data), other.roots)
	var ee *ExportError
	if !errors.As(err, &ee) || ee.Seq != 10 || !strings.Contains(ee.Reason, "not certified by the given root") {
		t.Fatalf("VerifyExport with another root = %v", err)
	}
	if _, err := VerifyExport(bytes.NewReader(data), nil); err == nil {
		t.Fatal("VerifyExport without roots succeeded")
	}
}

// TestExportSignerExpired: a checkpoint made outside the signer
// certificate's validity does not verify.
func TestExportSignerExpired(t *testing.T) {
	t.Parallel()
	fx := newExportFixture(t, 3)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	root, leaf := newTestCA(t, key)
	fx.roots = x509.NewCertPool()
	fx.roots.AddCert(root)
	fx.signer.Chain = [][]byte{leaf}
	e := fx.events[2]
	c, err := SignCheckpoint(rand.Reader, key, "audit-1", Head{Seq: 3, Hash: e.Hash}, testStart.Add(48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	fx.cps = []Checkpoint{c}
	_, err = VerifyExport(bytes.NewReader(fx.export(t, 1, 3)), fx.roots)
	if err == nil || !strings.Contains(err.Error(), "not certified") {
		t.Fatalf("VerifyExport = %v, want an expired signer", err)
	}
}

func TestExportWriterRefuses(t *testing.T) {
	t.Parallel()
	fx := newExportFixture(t, 12)
	hdr := ExportHeader{FirstSeq: 1, LastSeq: 12, Signers: []ExportSigner{fx.signer}}
	newW := func() *ExportWriter {
		x, err := NewExportWriter(&bytes.Buffer{}, hdr)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	x := newW()
	if err := x.WriteEvent(fx.events[1]); err == nil {
		t.Error("WriteEvent accepted event 2 first")
	}
	x = newW()
	for _, e := range fx.events {
		if err := x.WriteEvent(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := x.WriteCheckpoint(fx.cps[0]); err == nil {
		t.Error("WriteCheckpoint accepted a checkpoint of event 10 after event 12")
	}
	x = newW()
	for _, e := range fx.events {
		if err := x.WriteEvent(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := x.Close(); err == nil || !strings.Contains(err.Error(), "not covered") {
		t.Errorf("Close of an uncovered export = %v", err)
	}
	if _, err := NewExportWriter(&bytes.Buffer{}, ExportHeader{FirstSeq: 5, LastSeq: 4}); err == nil {
		t.Error("NewExportWriter accepted range 5..4")
	}
}

// FuzzVerifyExport: the verifier reads files from outside and must never
// panic, whatever they hold; seeds are a valid export and damaged copies.
func FuzzVerifyExport(f *testing.F) {
	fx := newExportFixture(f, 12)
	data := fx.export(f, 1, 12)
	f.Add(data)
	f.Add(fx.export(f, 4, 12))
	f.Add(data[:len(data)/2])
	ls := lines(data)
	ls[3], ls[4] = ls[4], ls[3]
	f.Add(join(ls))
	f.Add([]byte(`{"type":"header","format":"sigil-audit-export","version":1,"first_seq":1,"last_seq":1,"events":1,"signers":[]}` + "\n" +
		`{"type":"event","seq":1,"encoding":"base64","actor":"!!","prev_hash":"00","hash":"zz"}` + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		sum, err := VerifyExport(bytes.NewReader(b), fx.roots)
		if err == nil && sum.Events > 0 && sum.Covered.Seq != sum.LastSeq {
			t.Fatalf("verified an export whose last event is uncovered: %+v", sum)
		}
	})
}
