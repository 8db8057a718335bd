package witness_test

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/ca/audit/witness"
)

// The records of testdata/v1, written by the publisher as it was in
// cmd/sigil before it moved here: the format must not change, so that
// existing witness directories keep verifying.
var (
	goldenTime = time.Date(2026, 3, 1, 12, 30, 45, 123456789, time.UTC)
	goldenCPs  = []audit.Checkpoint{{Seq: 42, Hash: []byte{1, 2, 3, 0xfe, 0xff}, Time: goldenTime, KeyID: "audit-1", Signature: []byte("sig-cp")}}
	// Size 0 is the empty tree: its size is left out of the JSON (omitempty)
	// and still reads back as 0.
	goldenHeads = []audit.TreeHead{
		{Size: 0, RootHash: []byte{0xe3, 0xb0}, Time: goldenTime, KeyID: "audit-2", Signature: []byte("sig-empty")},
		{Size: 7, RootHash: []byte{9, 8, 7}, Time: goldenTime.Add(time.Second), KeyID: "audit-1", Signature: []byte("sig-th")},
	}
	goldenFiles = []string{
		"checkpoint-00000000000000000042.json",
		"tree-head-00000000000000000000.json",
		"tree-head-00000000000000000007.json",
	}
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestPublishDirIsByteForByte(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "witness")
	p, err := witness.New(witness.Config{Dir: dir, Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	p.Publish(goldenCPs, goldenHeads)
	p.Close()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("witness directory mode = %v, want 0700", fi.Mode().Perm())
	}
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	if !reflect.DeepEqual(names, goldenFiles) {
		t.Fatalf("witness directory holds %v, want %v", names, goldenFiles)
	}
	for _, name := range goldenFiles {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join("testdata", "v1", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %s\nwant %s", name, got, want)
		}
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v, want 0600", name, fi.Mode().Perm())
		}
	}
}

func TestReadDirReadsV1(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", "v1"))); err != nil {
		t.Fatal(err)
	}
	// What ReadDir must pass over: a write in progress, other files, a directory.
	for name, data := range map[string]string{".checkpoint-1.json.tmp123": "{", "README": "x", "notes.txt": "x"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub.json"), 0o700); err != nil {
		t.Fatal(err)
	}
	cps, heads, err := witness.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cps, goldenCPs) {
		t.Errorf("checkpoints = %+v, want %+v", cps, goldenCPs)
	}
	if !reflect.DeepEqual(heads, goldenHeads) {
		t.Errorf("tree heads = %+v, want %+v", heads, goldenHeads)
	}
}

func TestReadDirRefuses(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, file, want string
	}{
		{"unknown type", `{"type":"sth","time":"2026-03-01T12:30:45Z","key_id":"k","signature":"eA=="}`, `unknown record type "sth"`},
		{"unknown field", `{"type":"checkpoint","seq":1,"extra":1,"time":"2026-03-01T12:30:45Z","key_id":"k","signature":"eA=="}`, "unknown field"},
		{"not JSON", `checkpoint`, "invalid character"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "checkpoint-00000000000000000001.json"), []byte(c.file), 0o600); err != nil {
				t.Fatal(err)
			}
			_, _, err := witness.ReadDir(dir)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "checkpoint-00000000000000000001.json") {
				t.Errorf("ReadDir = %v, want an error naming the file and %q", err, c.want)
			}
		})
	}
	t.Run("missing directory", func(t *testing.T) {
		t.Parallel()
		if _, _, err := witness.ReadDir(filepath.Join(t.TempDir(), "none")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("ReadDir of a missing directory = %v, want fs.ErrNotExist", err)
		}
	})
}

func TestPublishURL(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var bodies []string
	fail := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("witness request %s with Content-Type %q", r.Method, r.Header.Get("Content-Type"))
		}
		bodies = append(bodies, string(b))
		if fail { // the first answer is a failure, which is logged
			fail = false
			http.Error(w, "no", http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	var logs bytes.Buffer
	p, err := witness.New(witness.Config{URL: srv.URL, Logger: slog.New(slog.NewTextHandler(&logs, nil)), Client: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	p.Publish(goldenCPs, goldenHeads)
	p.Close()
	var want []string
	for _, name := range goldenFiles {
		b, err := os.ReadFile(filepath.Join("testdata", "v1", name))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, strings.TrimSuffix(string(b), "\n"))
	}
	mu.Lock()
	defer mu.Unlock()
	// Published in order: checkpoints, then heads in the order given (here
	// also the order of the file names).
	if !reflect.DeepEqual(bodies, want) {
		t.Errorf("POSTed bodies:\n%s\nwant:\n%s", strings.Join(bodies, "\n"), strings.Join(want, "\n"))
	}
	if !strings.Contains(logs.String(), "audit witness: publish failed") || !strings.Contains(logs.String(), "500 Internal Server Error") {
		t.Errorf("a refused POST is not logged:\n%s", logs.String())
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	p, err := witness.New(witness.Config{Logger: discard()})
	if p != nil || err != nil {
		t.Errorf("New without a directory or URL = %v, %v; want nil, nil", p, err)
	}
	p.Close() // a nil publisher closes

	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := witness.New(witness.Config{Dir: filepath.Join(file, "witness"), Logger: discard()}); err == nil {
		t.Error("New with a directory that cannot be created succeeded")
	}
	if _, err := witness.New(witness.Config{Dir: t.TempDir()}); err == nil {
		t.Error("New without a logger succeeded")
	}
}

func TestFileName(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		r    witness.Record
		want string
	}{
		{witness.CheckpointRecord(audit.Checkpoint{Seq: 3}), "checkpoint-00000000000000000003.json"},
		{witness.TreeHeadRecord(audit.TreeHead{Size: 1 << 40}), "tree-head-00000001099511627776.json"},
	} {
		if got := c.r.FileName(); got != c.want {
			t.Errorf("FileName(%+v) = %s, want %s", c.r, got, c.want)
		}
	}
}
