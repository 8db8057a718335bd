package witness

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sigil-ca/sigil/ca/audit"
)

// Record types.
const (
	TypeCheckpoint = "checkpoint"
	TypeTreeHead   = "tree_head"
)

// Record is one checkpoint or tree head as a witness keeps it: a JSON file
// in the witness directory, or the body POSTed to the witness URL. Every
// field the signature covers is here, so a record verifies with the audit
// key alone.
type Record struct {
	Type      string    `json:"type"` // TypeCheckpoint or TypeTreeHead
	Seq       int64     `json:"seq,omitempty"`
	Hash      []byte    `json:"hash,omitempty"`
	Size      uint64    `json:"size,omitempty"`
	RootHash  []byte    `json:"root_hash,omitempty"`
	Time      time.Time `json:"time"`
	KeyID     string    `json:"key_id"`
	Signature []byte    `json:"signature"`
}

// CheckpointRecord is the record of c.
func CheckpointRecord(c audit.Checkpoint) Record {
	return Record{Type: TypeCheckpoint, Seq: c.Seq, Hash: c.Hash, Time: c.Time, KeyID: c.KeyID, Signature: c.Signature}
}

// TreeHeadRecord is the record of h.
func TreeHeadRecord(h audit.TreeHead) Record {
	return Record{Type: TypeTreeHead, Size: h.Size, RootHash: h.RootHash, Time: h.Time, KeyID: h.KeyID, Signature: h.Signature}
}

// FileName is the record's name in the witness directory: sorted by
// position, and the same for the same head, so a republished one overwrites.
func (r Record) FileName() string {
	if r.Type == TypeTreeHead {
		return fmt.Sprintf("tree-head-%020d.json", r.Size)
	}
	return fmt.Sprintf("checkpoint-%020d.json", r.Seq)
}

// ReadDir reads every record in a witness directory. A record that does
// not parse is an error: a witness is written only by Sigil. Hidden files
// (a write in progress) and names not ending in .json are skipped. The
// error of a missing directory wraps fs.ErrNotExist.
func ReadDir(dir string) ([]audit.Checkpoint, []audit.TreeHead, error) {
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
		var r Record
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			return nil, nil, fmt.Errorf("witness %s: %w", name, err)
		}
		switch r.Type {
		case TypeCheckpoint:
			cps = append(cps, audit.Checkpoint{Seq: r.Seq, Hash: r.Hash, Time: r.Time, KeyID: r.KeyID, Signature: r.Signature})
		case TypeTreeHead:
			heads = append(heads, audit.TreeHead{Size: r.Size, RootHash: r.RootHash, Time: r.Time, KeyID: r.KeyID, Signature: r.Signature})
		default:
			return nil, nil, fmt.Errorf("witness %s: unknown record type %q", name, r.Type)
		}
	}
	return cps, heads, nil
}
