package audit

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"
)

// ExportFormat and ExportVersion name the NDJSON export format written by
// ExportWriter and read by VerifyExport.
const (
	ExportFormat  = "sigil-audit-export"
	ExportVersion = 1
)

// Line types of an export, in the "type" member every line starts with.
const (
	exportHeaderType     = "header"
	exportEventType      = "event"
	exportCheckpointType = "checkpoint"
	exportEndType        = "end"
)

// ExportHeader describes an export; it is the first line of the file. Only
// the signer chains in it are checked against the root: CA, Exported and
// Since are informational, and the seq range and count are checked against
// the lines that follow.
type ExportHeader struct {
	CA       string    `json:"ca,omitempty"`
	Exported time.Time `json:"exported"`
	Since    time.Time `json:"since,omitzero"`
	// FirstSeq..LastSeq is the exported range; both 0 for an empty export.
	FirstSeq int64 `json:"first_seq"`
	LastSeq  int64 `json:"last_seq"`
	// Events is LastSeq-FirstSeq+1, or 0; NewExportWriter sets it.
	Events int64 `json:"events"`
	// Signers certifies the keys of the checkpoints in the export.
	Signers []ExportSigner `json:"signers"`
}

// ExportSigner is a checkpoint key and its certificate chain: DER, the
// signer's certificate first, up to but excluding the root, which the
// verifier brings.
type ExportSigner struct {
	KeyID string   `json:"key_id"`
	Chain [][]byte `json:"chain"` // base64 in JSON
}

// ExportEnd is the last line of an export: what the writer wrote, so a file
// cut short or missing a line is told from a complete one.
type ExportEnd struct {
	Events      int64 `json:"events"`
	Checkpoints int64 `json:"checkpoints"`
	LastSeq     int64 `json:"last_seq"`
}

// exportHeaderLine is line 1.
type exportHeaderLine struct {
	Type    string `json:"type"`
	Format  string `json:"format"`
	Version int    `json:"version"`
	ExportHeader
}

// exportEventLine is an event. Encoding "base64" means Actor, Action, Target
// and every Detail key and value are base64 (standard, padded) because one of
// them is not valid UTF-8, which JSON strings cannot carry byte for byte.
type exportEventLine struct {
	Type     string            `json:"type"`
	Seq      int64             `json:"seq"`
	Time     time.Time         `json:"time"`
	Encoding string            `json:"encoding,omitempty"`
	Actor    string            `json:"actor"`
	Action   string            `json:"action"`
	Target   string            `json:"target"`
	Detail   map[string]string `json:"detail,omitempty"`
	PrevHash hexBytes          `json:"prev_hash"`
	Hash     hexBytes          `json:"hash"`
}

// exportCheckpointLine is a signed checkpoint; it follows the event it signs.
type exportCheckpointLine struct {
	Type      string    `json:"type"`
	Seq       int64     `json:"seq"`
	Hash      hexBytes  `json:"hash"`
	Time      time.Time `json:"time"`
	KeyID     string    `json:"key_id"`
	Signature []byte    `json:"signature"`
}

// exportEndLine is the last line.
type exportEndLine struct {
	Type string `json:"type"`
	ExportEnd
}

// hexBytes is a hash, hex in JSON.
type hexBytes []byte

func (h hexBytes) MarshalText() ([]byte, error) {
	return []byte(hex.EncodeToString(h)), nil
}

func (h *hexBytes) UnmarshalText(b []byte) error {
	out := make([]byte, hex.DecodedLen(len(b)))
	if _, err := hex.Decode(out, b); err != nil {
		return err
	}
	*h = out
	return nil
}

const encodingBase64 = "base64"

// ExportWriter writes an export line by line, straight to its io.Writer, so
// memory does not grow with the log. Write the events in Seq order from
// FirstSeq to LastSeq, each checkpoint right after the event it signs, then
// Close. It refuses anything that would not verify: a gap, a checkpoint that
// does not match its event, a key without a signer chain, and (at Close) an
// export whose last event no checkpoint covers. After an error every call
// returns it. An ExportWriter is not safe for concurrent use.
type ExportWriter struct {
	w       io.Writer
	h       ExportHeader
	keys    map[string]bool
	seq     int64 // last event written, FirstSeq-1 before the first
	hash    []byte
	covered int64 // highest seq a written checkpoint signs
	end     ExportEnd
	err     error
}

// NewExportWriter checks h, sets h.Events, and writes the header line.
func NewExportWriter(w io.Writer, h ExportHeader) (*ExportWriter, error) {
	switch {
	case h.FirstSeq == 0 && h.LastSeq == 0:
		h.Events = 0
	case h.FirstSeq < 1 || h.LastSeq < h.FirstSeq:
		return nil, fmt.Errorf("audit export: bad range %d..%d", h.FirstSeq, h.LastSeq)
	default:
		h.Events = h.LastSeq - h.FirstSeq + 1
	}
	keys := map[string]bool{}
	for _, s := range h.Signers {
		if s.KeyID == "" || !utf8.ValidString(s.KeyID) || len(s.Chain) == 0 {
			return nil, fmt.Errorf("audit export: signer %q needs a key id and a certificate chain", s.KeyID)
		}
		keys[s.KeyID] = true
	}
	x := &ExportWriter{w: w, h: h, keys: keys, seq: max(h.FirstSeq-1, 0)}
	line := exportHeaderLine{Type: exportHeaderType, Format: ExportFormat, Version: ExportVersion, ExportHeader: h}
	if err := x.writeLine(line); err != nil {
		return nil, err
	}
	return x, nil
}

// WriteEvent writes the next event, which must be Seq FirstSeq for the first
// call and one more than the last after that, within the header's range, and
// link to the previous one.
func (x *ExportWriter) WriteEvent(e Event) error {
	if x.err != nil {
		return x.err
	}
	if e.Seq != x.seq+1 || e.Seq > x.h.LastSeq {
		return x.fail(fmt.Errorf("audit export: event %d out of order or range (after %d, range %d..%d)", e.Seq, x.seq, x.h.FirstSeq, x.h.LastSeq))
	}
	if x.hash != nil && string(e.PrevHash) != string(x.hash) {
		return x.fail(fmt.Errorf("audit export: event %d does not link to event %d", e.Seq, x.seq))
	}
	line := exportEventLine{Type: exportEventType, Seq: e.Seq, Time: e.Time.UTC(), Actor: e.Actor, Action: e.Action,
		Target: e.Target, Detail: e.Detail, PrevHash: e.PrevHash, Hash: e.Hash}
	if !eventIsUTF8(e) {
		line.Encoding = encodingBase64
		line.Actor, line.Action, line.Target = b64(e.Actor), b64(e.Action), b64(e.Target)
		line.Detail = make(map[string]string, len(e.Detail))
		for k, v := range e.Detail {
			line.Detail[b64(k)] = b64(v)
		}
	}
	if err := x.writeLine(line); err != nil {
		return err
	}
	x.seq, x.hash = e.Seq, append(x.hash[:0], e.Hash...)
	x.end.Events++
	x.end.LastSeq = e.Seq
	return nil
}

// WriteCheckpoint writes a checkpoint of the event just written, whose key
// has a signer in the header.
func (x *ExportWriter) WriteCheckpoint(c Checkpoint) error {
	if x.err != nil {
		return x.err
	}
	if x.hash == nil || c.Seq != x.seq || string(c.Hash) != string(x.hash) {
		return x.fail(fmt.Errorf("audit export: checkpoint of event %d does not sign the event just written (%d)", c.Seq, x.seq))
	}
	if !x.keys[c.KeyID] {
		return x.fail(fmt.Errorf("audit export: checkpoint key %q has no signer chain in the header", c.KeyID))
	}
	line := exportCheckpointLine{Type: exportCheckpointType, Seq: c.Seq, Hash: c.Hash, Time: c.Time.UTC(), KeyID: c.KeyID, Signature: c.Signature}
	if err := x.writeLine(line); err != nil {
		return err
	}
	x.covered = c.Seq
	x.end.Checkpoints++
	return nil
}

// Close checks that every event of the range was written and the last one
// is covered by a checkpoint, then writes the end line. It does not close
// the underlying writer.
func (x *ExportWriter) Close() error {
	if x.err != nil {
		return x.err
	}
	if x.seq != x.h.LastSeq {
		return x.fail(fmt.Errorf("audit export: ended at event %d, header promises %d", x.seq, x.h.LastSeq))
	}
	if x.h.Events > 0 && x.covered != x.h.LastSeq {
		return x.fail(fmt.Errorf("audit export: last event %d is not covered by a checkpoint", x.h.LastSeq))
	}
	if err := x.writeLine(exportEndLine{Type: exportEndType, ExportEnd: x.end}); err != nil {
		return err
	}
	x.err = errors.New("audit export: writer closed")
	return nil
}

func (x *ExportWriter) writeLine(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return x.fail(fmt.Errorf("audit export: encode: %w", err))
	}
	if _, err := x.w.Write(append(b, '\n')); err != nil {
		return x.fail(fmt.Errorf("audit export: write: %w", err))
	}
	return nil
}

func (x *ExportWriter) fail(err error) error {
	x.err = err
	return err
}

// eventIsUTF8 reports whether every string of e survives JSON as it is.
func eventIsUTF8(e Event) bool {
	if !utf8.ValidString(e.Actor) || !utf8.ValidString(e.Action) || !utf8.ValidString(e.Target) {
		return false
	}
	for k, v := range e.Detail {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return false
		}
	}
	return true
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
