package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/internal/atomicfile"
)

// witnessRecord is one checkpoint or tree head as a witness keeps it: a
// JSON file in the witness directory, or the body POSTed to the witness URL.
// Every field the signature covers is here, so a record verifies with the
// audit key alone.
type witnessRecord struct {
	Type      string    `json:"type"` // "checkpoint" or "tree_head"
	Seq       int64     `json:"seq,omitempty"`
	Hash      []byte    `json:"hash,omitempty"`
	Size      uint64    `json:"size,omitempty"`
	RootHash  []byte    `json:"root_hash,omitempty"`
	Time      time.Time `json:"time"`
	KeyID     string    `json:"key_id"`
	Signature []byte    `json:"signature"`
}

func checkpointRecord(c audit.Checkpoint) witnessRecord {
	return witnessRecord{Type: "checkpoint", Seq: c.Seq, Hash: c.Hash, Time: c.Time, KeyID: c.KeyID, Signature: c.Signature}
}

func treeHeadRecord(h audit.TreeHead) witnessRecord {
	return witnessRecord{Type: "tree_head", Size: h.Size, RootHash: h.RootHash, Time: h.Time, KeyID: h.KeyID, Signature: h.Signature}
}

// fileName is the record's name in the witness directory: sorted by
// position, and the same for the same head, so a republished one overwrites.
func (r witnessRecord) fileName() string {
	if r.Type == "tree_head" {
		return fmt.Sprintf("tree-head-%020d.json", r.Size)
	}
	return fmt.Sprintf("checkpoint-%020d.json", r.Seq)
}

// witness publishes checkpoints and tree heads outside the database, off
// the store's writer goroutine: a slow disk or URL never holds up a commit.
type witness struct {
	dir, url string
	client   *http.Client
	log      *slog.Logger
	ch       chan witnessRecord
	done     chan struct{}
	once     sync.Once
}

// newWitness starts a publisher for cfg; nil if no witness is configured.
// The directory is created (0700) and must be writable now, so that a
// misconfiguration stops start-up rather than going unnoticed.
func newWitness(dir, url string, log *slog.Logger) (*witness, error) {
	if dir == "" && url == "" {
		return nil, nil
	}
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("audit witness: %w", err)
		}
		probe, err := os.CreateTemp(dir, ".probe*")
		if err != nil {
			return nil, fmt.Errorf("audit witness: directory %s is not writable: %w", dir, err)
		}
		probe.Close()
		os.Remove(probe.Name())
	}
	w := &witness{dir: dir, url: url, log: log, client: &http.Client{Timeout: 10 * time.Second},
		ch: make(chan witnessRecord, 1024), done: make(chan struct{})}
	go w.run()
	return w, nil
}

// publish queues what a commit signed; it never blocks. A full queue drops
// the record with an error in the log: the next checkpoint covers the same
// events, so the witness falls behind but is never wrong.
func (w *witness) publish(cps []audit.Checkpoint, heads []audit.TreeHead) {
	recs := make([]witnessRecord, 0, len(cps)+len(heads))
	for _, c := range cps {
		recs = append(recs, checkpointRecord(c))
	}
	for _, h := range heads {
		recs = append(recs, treeHeadRecord(h))
	}
	for _, r := range recs {
		select {
		case w.ch <- r:
		default:
			w.log.Error("audit witness queue full; record not published", "type", r.Type, "seq", r.Seq, "size", r.Size)
		}
	}
}

func (w *witness) run() {
	defer close(w.done)
	for r := range w.ch {
		if err := w.write(r); err != nil {
			w.log.Error("audit witness: publish failed", "type", r.Type, "seq", r.Seq, "size", r.Size, "error", err)
		}
	}
}

func (w *witness) write(r witnessRecord) error {
	body, err := json.Marshal(r)
	if err != nil {
		return err
	}
	var errs []error
	if w.dir != "" {
		errs = append(errs, atomicfile.WriteFile(filepath.Join(w.dir, r.fileName()), append(body, '\n'), 0o600))
	}
	if w.url != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
		if err != nil {
			return errors.Join(append(errs, err)...)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := w.client.Do(req)
		switch {
		case err != nil:
			errs = append(errs, err)
		case resp.StatusCode/100 != 2:
			resp.Body.Close()
			errs = append(errs, fmt.Errorf("%s answered %s", w.url, resp.Status))
		default:
			resp.Body.Close()
		}
	}
	return errors.Join(errs...)
}

// close publishes what is queued and stops; call it after the store's last
// commit (the final checkpoint).
func (w *witness) close() {
	if w == nil {
		return
	}
	w.once.Do(func() {
		close(w.ch)
		<-w.done
	})
}

// readWitnessDir reads every record in a witness directory. A record that
// does not parse is an error: a witness is written only by Sigil.
func readWitnessDir(dir string) ([]audit.Checkpoint, []audit.TreeHead, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("witness: %w", err)
	}
	var cps []audit.Checkpoint
	var heads []audit.TreeHead
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".json") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, nil, fmt.Errorf("witness: %w", err)
		}
		var r witnessRecord
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			return nil, nil, fmt.Errorf("witness %s: %w", name, err)
		}
		switch r.Type {
		case "checkpoint":
			cps = append(cps, audit.Checkpoint{Seq: r.Seq, Hash: r.Hash, Time: r.Time, KeyID: r.KeyID, Signature: r.Signature})
		case "tree_head":
			heads = append(heads, audit.TreeHead{Size: r.Size, RootHash: r.RootHash, Time: r.Time, KeyID: r.KeyID, Signature: r.Signature})
		default:
			return nil, nil, fmt.Errorf("witness %s: unknown record type %q", name, r.Type)
		}
	}
	return cps, heads, nil
}
