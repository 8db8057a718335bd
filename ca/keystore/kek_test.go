package keystore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/sigil-ca/sigil/internal/testclock"
)

var testNow = testclock.At(time.Date(2026, 3, 14, 15, 9, 26, 0, time.FixedZone("UTC+2", 2*60*60)))

// newTestKEK makes a KEK with FastKDFParams.
func newTestKEK(t testing.TB, id, passphrase string) (*KEK, KEKRecord) {
	t.Helper()
	params, err := FastKDFParams(rand.Reader)
	if err != nil {
		t.Fatalf("FastKDFParams: %v", err)
	}
	kek, rec, err := NewKEK(rand.Reader, id, []byte(passphrase), params, testNow)
	if err != nil {
		t.Fatalf("NewKEK: %v", err)
	}
	return kek, rec
}

// rawKEK re-derives the KEK bytes a record describes, for scanning outputs.
func rawKEK(passphrase string, rec KEKRecord) []byte {
	p := rec.Params
	return argon2.IDKey([]byte(passphrase), p.Salt, p.Time, p.MemoryKiB, p.Threads, aesKeySize)
}

// errReader fails every read, standing in for a broken entropy source.
type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("entropy unavailable") }

func TestKEKParams(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		gen  func(io.Reader) (KDFParams, error)
		t, m uint32
		p    uint8
	}{
		{name: "default", gen: DefaultKDFParams, t: 3, m: 64 * 1024, p: 2},
		{name: "fast", gen: FastKDFParams, t: 1, m: 8 * 1024, p: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			gen := tt.gen
			p1, err := gen(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			p2, err := gen(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			if p1.KDF != "argon2id" || p1.Time != tt.t || p1.MemoryKiB != tt.m || p1.Threads != tt.p {
				t.Errorf("params = %+v, want argon2id t=%d m=%d p=%d", p1, tt.t, tt.m, tt.p)
			}
			if len(p1.Salt) != 16 {
				t.Errorf("salt of %d bytes, want 16", len(p1.Salt))
			}
			if bytes.Equal(p1.Salt, p2.Salt) {
				t.Errorf("two calls returned the same salt")
			}
			if err := p1.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
			if _, err := gen(errReader{}); err == nil {
				t.Errorf("no error from a failing rand")
			}
		})
	}
}

func TestKEKParamsValidate(t *testing.T) {
	t.Parallel()
	ok := KDFParams{KDF: "argon2id", Time: 1, MemoryKiB: 8192, Threads: 1, Salt: make([]byte, 16)}
	tests := []struct {
		name    string
		edit    func(p *KDFParams)
		wantErr bool
	}{
		{name: "minimum", edit: func(*KDFParams) {}},
		{name: "long salt", edit: func(p *KDFParams) { p.Salt = make([]byte, 32) }},
		{name: "raised", edit: func(p *KDFParams) { p.Time, p.MemoryKiB, p.Threads = 4, 1<<20, 8 }},
		{name: "empty kdf", edit: func(p *KDFParams) { p.KDF = "" }, wantErr: true},
		{name: "argon2i", edit: func(p *KDFParams) { p.KDF = "argon2i" }, wantErr: true},
		{name: "upper case kdf", edit: func(p *KDFParams) { p.KDF = "Argon2id" }, wantErr: true},
		{name: "scrypt", edit: func(p *KDFParams) { p.KDF = "scrypt" }, wantErr: true},
		{name: "time 0", edit: func(p *KDFParams) { p.Time = 0 }, wantErr: true},
		{name: "time huge", edit: func(p *KDFParams) { p.Time = 1 << 31 }, wantErr: true},
		{name: "memory 8191", edit: func(p *KDFParams) { p.MemoryKiB = 8191 }, wantErr: true},
		{name: "memory 0", edit: func(p *KDFParams) { p.MemoryKiB = 0 }, wantErr: true},
		{name: "memory huge", edit: func(p *KDFParams) { p.MemoryKiB = 1<<32 - 1 }, wantErr: true},
		{name: "threads 0", edit: func(p *KDFParams) { p.Threads = 0 }, wantErr: true},
		{name: "salt 15", edit: func(p *KDFParams) { p.Salt = make([]byte, 15) }, wantErr: true},
		{name: "no salt", edit: func(p *KDFParams) { p.Salt = nil }, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := ok
			tt.edit(&p)
			err := p.Validate()
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Errorf("Validate(%+v) = %v, want error %v", p, err, tt.wantErr)
			}
		})
	}
}

func TestKEKRoundTrip(t *testing.T) {
	t.Parallel()
	const pass = "correct horse battery staple"
	kek, rec := newTestKEK(t, "kek-1", pass)
	if kek.ID() != "kek-1" || rec.ID != "kek-1" {
		t.Errorf("ids = %q, %q, want kek-1", kek.ID(), rec.ID)
	}
	if rec.Backend != "passphrase" {
		t.Errorf("Backend = %q, want passphrase", rec.Backend)
	}
	if !rec.Created.Equal(testNow) || rec.Created.Location() != time.UTC {
		t.Errorf("Created = %v, want %v in UTC", rec.Created, testNow.UTC())
	}
	if err := rec.Params.Validate(); err != nil {
		t.Errorf("record params: %v", err)
	}

	// The record survives JSON, as the store will persist it.
	js, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	var back KEKRecord
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	opened, err := OpenKEK([]byte(pass), back)
	if err != nil {
		t.Fatalf("OpenKEK: %v", err)
	}
	if opened.ID() != "kek-1" {
		t.Errorf("opened ID = %q", opened.ID())
	}

	// A key sealed under the new KEK opens under the re-derived one.
	key := testKey(t, ECDSAP256)
	s, err := Seal(context.Background(), rand.Reader, kek, "key-1", key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), opened, "key-1", s); err != nil {
		t.Errorf("Open with re-derived KEK: %v", err)
	}
}

func TestKEKSaltIsCopied(t *testing.T) {
	t.Parallel()
	params, err := FastKDFParams(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, rec, err := NewKEK(rand.Reader, "kek-1", []byte("pass"), params, testNow)
	if err != nil {
		t.Fatal(err)
	}
	clear(params.Salt)
	if _, err := OpenKEK([]byte("pass"), rec); err != nil {
		t.Errorf("record shares the caller's salt: %v", err)
	}
}

func TestKEKWrongPassphrase(t *testing.T) {
	t.Parallel()
	_, rec := newTestKEK(t, "kek-1", "right")
	tests := []string{"wrong", "right ", "Right", ""}
	for _, pass := range tests {
		t.Run(fmt.Sprintf("%q", pass), func(t *testing.T) {
			t.Parallel()
			kek, err := OpenKEK([]byte(pass), rec)
			if !errors.Is(err, ErrWrongPassphrase) {
				t.Fatalf("OpenKEK = %v, %v; want ErrWrongPassphrase", kek, err)
			}
			if got, want := err.Error(), "wrong passphrase for kek-1"; got != want {
				t.Errorf("error = %q, want %q", got, want)
			}
		})
	}
}

func TestKEKOpenBadRecord(t *testing.T) {
	t.Parallel()
	const pass = "zq7-opal-meridian"
	_, rec := newTestKEK(t, "kek-1", pass)
	tests := []struct {
		name      string
		edit      func(r *KEKRecord)
		wrongPass bool // want ErrWrongPassphrase rather than another error
	}{
		{name: "check flipped first byte", edit: func(r *KEKRecord) { r.Check[0] ^= 1 }, wrongPass: true},
		{name: "check flipped last byte", edit: func(r *KEKRecord) { r.Check[len(r.Check)-1] ^= 0x80 }, wrongPass: true},
		{name: "check truncated", edit: func(r *KEKRecord) { r.Check = r.Check[:len(r.Check)-1] }},
		{name: "check empty", edit: func(r *KEKRecord) { r.Check = nil }},
		// The id is bound into the check value: a record renamed to another
		// id does not open.
		{name: "renamed", edit: func(r *KEKRecord) { r.ID = "kek-2" }, wrongPass: true},
		{name: "other salt", edit: func(r *KEKRecord) { r.Params.Salt[0] ^= 1 }, wrongPass: true},
		{name: "other time", edit: func(r *KEKRecord) { r.Params.Time = 2 }, wrongPass: true},
		{name: "weak params", edit: func(r *KEKRecord) { r.Params.MemoryKiB = 1024 }},
		{name: "huge params", edit: func(r *KEKRecord) { r.Params.MemoryKiB = 1<<32 - 1 }},
		{name: "other backend", edit: func(r *KEKRecord) { r.Backend = "pkcs11" }},
		{name: "empty id", edit: func(r *KEKRecord) { r.ID = "" }},
		{name: "colon id", edit: func(r *KEKRecord) { r.ID = "kek:1" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := rec
			r.Check = bytes.Clone(rec.Check)
			r.Params.Salt = bytes.Clone(rec.Params.Salt)
			tt.edit(&r)
			kek, err := OpenKEK([]byte(pass), r)
			if err == nil {
				t.Fatalf("OpenKEK = %v, want error", kek)
			}
			if got := errors.Is(err, ErrWrongPassphrase); got != tt.wrongPass {
				t.Errorf("OpenKEK error %q: errors.Is(ErrWrongPassphrase) = %v, want %v", err, got, tt.wrongPass)
			}
			if strings.Contains(err.Error(), pass) {
				t.Errorf("error %q contains the passphrase", err)
			}
		})
	}
}

func TestKEKNewInvalid(t *testing.T) {
	t.Parallel()
	good, err := FastKDFParams(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	weak := good
	weak.Time = 0
	tests := []struct {
		name   string
		rand   io.Reader
		id     string
		pass   string
		params KDFParams
		now    time.Time
	}{
		{name: "empty id", rand: rand.Reader, id: "", pass: "p", params: good, now: testNow},
		{name: "colon id", rand: rand.Reader, id: "kek:1", pass: "p", params: good, now: testNow},
		{name: "empty passphrase", rand: rand.Reader, id: "kek-1", pass: "", params: good, now: testNow},
		{name: "weak params", rand: rand.Reader, id: "kek-1", pass: "p", params: weak, now: testNow},
		{name: "zero time", rand: rand.Reader, id: "kek-1", pass: "p", params: good},
		{name: "failing rand", rand: errReader{}, id: "kek-1", pass: "p", params: good, now: testNow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			kek, _, err := NewKEK(tt.rand, tt.id, []byte(tt.pass), tt.params, tt.now)
			if err == nil {
				t.Errorf("NewKEK = %v, want error", kek)
			}
		})
	}
}

func TestKEKRecordHoldsNoSecret(t *testing.T) {
	t.Parallel()
	const pass = "hunter2-but-longer"
	_, rec := newTestKEK(t, "kek-1", pass)
	js, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	raw := rawKEK(pass, rec)
	for name, secret := range map[string][]byte{
		"passphrase":   []byte(pass),
		"kek":          raw,
		"kek hex":      []byte(hex.EncodeToString(raw)),
		"kek half":     raw[:16],
		"kek 2nd half": raw[16:],
	} {
		if bytes.Contains(js, secret) {
			t.Errorf("record JSON contains the %s", name)
		}
		if bytes.Contains(rec.Check, secret) {
			t.Errorf("record Check contains the %s", name)
		}
	}
}

func TestRedactKEK(t *testing.T) {
	t.Parallel()
	const pass = "do-not-print-me"
	kek, rec := newTestKEK(t, "kek-1", pass)
	raw := rawKEK(pass, rec)

	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	logger.Info("unlocked", "kek", kek, slog.Any("kek_value", *kek))
	var text bytes.Buffer
	slog.New(slog.NewTextHandler(&text, nil)).Info("unlocked", "kek", kek)

	type holder struct{ K *KEK }
	outputs := map[string]string{
		"String":      kek.String(),
		"%v":          fmt.Sprintf("%v", kek),
		"%+v":         fmt.Sprintf("%+v", kek),
		"%#v":         fmt.Sprintf("%#v", kek),
		"%s":          fmt.Sprintf("%s", kek),
		"%x":          fmt.Sprintf("%x", kek),
		"%d":          fmt.Sprintf("%d", kek),
		"value %+v":   fmt.Sprintf("%+v", *kek),
		"value %#v":   fmt.Sprintf("%#v", *kek),
		"in struct":   fmt.Sprintf("%+v", holder{kek}),
		"slog json":   buf.String(),
		"slog text":   text.String(),
		"LogValue":    kek.LogValue().String(),
		"fmt.Sprint":  fmt.Sprint(kek),
		"fmt.Sprintf": fmt.Sprintf("%q", kek),
	}
	secrets := map[string]string{
		"passphrase": pass,
		"kek":        string(raw),
		"kek hex":    hex.EncodeToString(raw),
		"kek HEX":    strings.ToUpper(hex.EncodeToString(raw)),
		"kek bytes":  fmt.Sprint(raw),
	}
	for name, out := range outputs {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if !strings.Contains(out, "REDACTED") {
				t.Errorf("output %q does not say REDACTED", out)
			}
			for sname, s := range secrets {
				if strings.Contains(out, s) {
					t.Errorf("output contains the %s", sname)
				}
			}
		})
	}
	var logged map[string]any
	if err := json.Unmarshal(buf.Bytes(), &logged); err != nil {
		t.Fatalf("slog JSON: %v", err)
	}
	if logged["kek"] != "REDACTED" || logged["kek_value"] != "REDACTED" {
		t.Errorf("slog JSON = %s, want kek and kek_value REDACTED", buf.String())
	}
	js, err := json.Marshal(kek) //lint:ignore SA9005 checking that a KEK marshals to nothing
	if err != nil {
		t.Fatal(err)
	}
	if string(js) != "{}" {
		t.Errorf("json.Marshal(kek) = %s, want {}", js)
	}
}
