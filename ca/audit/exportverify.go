package audit

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// maxExportLine bounds one line of an export (an event with a large Detail,
// or the header with its certificate chains), so a hostile file cannot make
// the verifier buffer without limit.
const maxExportLine = 4 << 20

// ExportError names where an export fails verification: the 1-based line,
// the event Seq concerned (0 when none), and what was found.
type ExportError struct {
	Line   int
	Seq    int64
	Reason string
}

// Error returns a one-line description such as
// "audit export invalid at line 43 (event 42): hash mismatch (event altered)".
func (e *ExportError) Error() string {
	where := fmt.Sprintf("line %d", e.Line)
	if e.Seq != 0 {
		where += fmt.Sprintf(" (event %d)", e.Seq)
	}
	return "audit export invalid at " + where + ": " + e.Reason
}

// ExportSummary describes a verified export.
type ExportSummary struct {
	CA       string
	Exported time.Time
	Since    time.Time
	FirstSeq int64
	LastSeq  int64
	Events   int64
	// Checkpoints is the number of checkpoint lines verified; Covered is
	// the newest of them, which signs event LastSeq.
	Checkpoints int64
	Covered     Checkpoint
	CoveredBy   *x509.Certificate // the certificate of Covered's key
	Head        Head
	// Signers are the certificates of the keys whose checkpoints were
	// verified, each chained to one of the roots.
	Signers []*x509.Certificate
}

// exportSignerState is a header signer as the verifier uses it.
type exportSignerState struct {
	leaf          *x509.Certificate
	intermediates *x509.CertPool
	// notBefore..notAfter is the validity every certificate of the last
	// verified chain shares; a checkpoint inside it needs no new Verify.
	notBefore, notAfter time.Time
	verified            bool
	used                bool
}

// VerifyExport reads an export (ExportWriter's format) and checks, needing
// nothing but the file and roots: the header names the format; each signer
// chain leads to one of roots at the time of every checkpoint made with its
// key; every checkpoint signature verifies and matches the event it follows;
// every event hash recomputes and links to the event before it, in Seq order
// without gaps, from the header's FirstSeq (whose prev_hash is taken as
// given when FirstSeq > 1: the checkpoints after it vouch for it) to its
// LastSeq; the last event is covered by a checkpoint; the end line's counts
// match. It reads r once, streaming, in memory bounded by the longest line.
//
// On failure it returns an *ExportError naming the line and event: an
// altered line breaks its hash or a checkpoint, a removed line leaves a gap
// or a count short, swapped lines put a seq out of order (the error says
// where the expected event turned up), and a truncated file has no end line.
func VerifyExport(r io.Reader, roots *x509.CertPool) (ExportSummary, error) {
	if roots == nil {
		return ExportSummary{}, errors.New("verify audit export: no root certificates")
	}
	ev := &exportVerifier{sc: bufio.NewScanner(r), roots: roots}
	ev.sc.Buffer(make([]byte, 0, 64<<10), maxExportLine)
	return ev.run()
}

type exportVerifier struct {
	sc    *bufio.Scanner
	roots *x509.CertPool
	line  int

	h       ExportHeader
	signers map[string]*exportSignerState
	v       *Verifier
	last    Event // last event verified; Seq 0 before the first
	sum     ExportSummary
}

func (ev *exportVerifier) errorf(seq int64, format string, args ...any) error {
	return &ExportError{Line: ev.line, Seq: seq, Reason: fmt.Sprintf(format, args...)}
}

// next reads the next line; ok is false at the end of input.
func (ev *exportVerifier) next() (line []byte, ok bool, err error) {
	if !ev.sc.Scan() {
		if err := ev.sc.Err(); err != nil {
			ev.line++
			if errors.Is(err, bufio.ErrTooLong) {
				return nil, false, ev.errorf(0, "line longer than %d bytes (corrupted)", maxExportLine)
			}
			return nil, false, ev.errorf(0, "read: %v", err)
		}
		return nil, false, nil
	}
	ev.line++
	return ev.sc.Bytes(), true, nil
}

// decode parses one line strictly into v, after checking its type.
func (ev *exportVerifier) decode(line []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return ev.errorf(ev.last.Seq, "not a valid %s line: %v (corrupted)", lineType(line), err)
	}
	if dec.More() {
		return ev.errorf(ev.last.Seq, "trailing data after the JSON object (corrupted)")
	}
	return nil
}

// lineType returns the "type" member of a line, or "" if it has none.
func lineType(line []byte) string {
	var t struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(line, &t)
	return t.Type
}

func (ev *exportVerifier) run() (ExportSummary, error) {
	if err := ev.header(); err != nil {
		return ExportSummary{}, err
	}
	for {
		line, ok, err := ev.next()
		if err != nil {
			return ExportSummary{}, err
		}
		if !ok {
			return ExportSummary{}, &ExportError{Line: ev.line + 1,
				Reason: fmt.Sprintf("file ends without an end line after event %d (truncated)", ev.last.Seq)}
		}
		if !json.Valid(line) {
			return ExportSummary{}, ev.errorf(0, "not valid JSON, after event %d (corrupted)", ev.last.Seq)
		}
		switch t := lineType(line); t {
		case exportEventType:
			err = ev.event(line)
		case exportCheckpointType:
			err = ev.checkpoint(line)
		case exportEndType:
			if err := ev.end(line); err != nil {
				return ExportSummary{}, err
			}
			return ev.sum, nil
		case exportHeaderType:
			err = ev.errorf(0, "a second header line")
		default:
			err = ev.errorf(0, "not an export line (type %q), after event %d (corrupted)", t, ev.last.Seq)
		}
		if err != nil {
			return ExportSummary{}, err
		}
	}
}

func (ev *exportVerifier) header() error {
	line, ok, err := ev.next()
	if err != nil {
		return err
	}
	if !ok {
		return &ExportError{Line: 1, Reason: "empty file"}
	}
	var h exportHeaderLine
	if lineType(line) != exportHeaderType {
		return ev.errorf(0, "first line is not an export header")
	}
	if err := ev.decode(line, &h); err != nil {
		return err
	}
	if h.Format != ExportFormat || h.Version != ExportVersion {
		return ev.errorf(0, "format %q version %d, want %q version %d", h.Format, h.Version, ExportFormat, ExportVersion)
	}
	switch {
	case h.FirstSeq == 0 && h.LastSeq == 0 && h.Events == 0:
	case h.FirstSeq < 1 || h.LastSeq < h.FirstSeq || h.Events != h.LastSeq-h.FirstSeq+1:
		return ev.errorf(0, "header range %d..%d does not hold %d events", h.FirstSeq, h.LastSeq, h.Events)
	}
	ev.signers = map[string]*exportSignerState{}
	for i, s := range h.Signers {
		if len(s.Chain) == 0 {
			return ev.errorf(0, "signer %d (key %q) has no certificate", i+1, s.KeyID)
		}
		if _, dup := ev.signers[s.KeyID]; dup {
			return ev.errorf(0, "signer key %q listed twice", s.KeyID)
		}
		st := &exportSignerState{intermediates: x509.NewCertPool()}
		for j, der := range s.Chain {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				return ev.errorf(0, "signer %q certificate %d: %v", s.KeyID, j+1, err)
			}
			if j == 0 {
				st.leaf = c
			} else {
				st.intermediates.AddCert(c)
			}
		}
		if st.leaf.IsCA || st.leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
			return ev.errorf(0, "signer %q (%s) is not an audit signing certificate", s.KeyID, st.leaf.Subject.CommonName)
		}
		ev.signers[s.KeyID] = st
	}
	ev.h = h.ExportHeader
	ev.sum = ExportSummary{CA: h.CA, Exported: h.Exported, Since: h.Since, FirstSeq: h.FirstSeq, LastSeq: h.LastSeq}
	return nil
}

func (ev *exportVerifier) event(line []byte) error {
	var l exportEventLine
	if err := ev.decode(line, &l); err != nil {
		return err
	}
	e, err := l.event()
	if err != nil {
		return ev.errorf(l.Seq, "%v (corrupted)", err)
	}
	if ev.h.Events == 0 {
		return ev.errorf(e.Seq, "event in an export whose header holds none")
	}
	want := ev.h.FirstSeq
	if ev.v != nil {
		want = ev.last.Seq + 1
	}
	switch {
	case e.Seq > ev.h.LastSeq && want > ev.h.LastSeq:
		return ev.errorf(e.Seq, "event beyond the header's last event %d (line added?)", ev.h.LastSeq)
	case e.Seq > want:
		return ev.gap(want, e.Seq)
	case e.Seq < want:
		return ev.errorf(e.Seq, "expected event %d, found %d: seq goes backwards (lines reordered or duplicated)", want, e.Seq)
	}
	if ev.v == nil {
		start := Head{}
		if e.Seq > 1 {
			// Mid-chain: the link into the export is taken as given; the
			// checkpoints that follow vouch for it.
			start = Head{Seq: e.Seq - 1, Hash: e.PrevHash}
		}
		ev.v = NewVerifierFrom(start, nil, nil)
	}
	if err := ev.v.Add(e); err != nil {
		var ve *VerifyError
		if errors.As(err, &ve) {
			return ev.errorf(e.Seq, "%s", ve.Reason)
		}
		return ev.errorf(e.Seq, "%v", err)
	}
	ev.last = e
	ev.sum.Events++
	ev.sum.Head = Head{Seq: e.Seq, Hash: e.Hash}
	return nil
}

// gap reports event want missing where found turned up, saying where want
// is when it appears further on (lines out of order rather than removed).
// It reads the rest of the input to find out.
func (ev *exportVerifier) gap(want, found int64) error {
	at := ev.line
	for {
		line, ok, err := ev.next()
		if err != nil || !ok {
			break
		}
		if lineType(line) != exportEventType {
			continue
		}
		var s struct {
			Seq int64 `json:"seq"`
		}
		if json.Unmarshal(line, &s) == nil && s.Seq == want {
			return &ExportError{Line: at, Seq: found, Reason: fmt.Sprintf(
				"expected event %d, found %d: lines out of order (event %d is at line %d)", want, found, want, ev.line)}
		}
	}
	return &ExportError{Line: at, Seq: found, Reason: fmt.Sprintf("expected event %d, found %d: %s (line removed?)", want, found, missingReason(want, found-1))}
}

func (ev *exportVerifier) checkpoint(line []byte) error {
	var l exportCheckpointLine
	if err := ev.decode(line, &l); err != nil {
		return err
	}
	c := Checkpoint{Seq: l.Seq, Hash: l.Hash, Time: l.Time, KeyID: l.KeyID, Signature: l.Signature}
	if ev.last.Seq == 0 || c.Seq != ev.last.Seq {
		return ev.errorf(c.Seq, "checkpoint of event %d out of place: it must follow that event, but follows event %d (lines reordered or removed?)", c.Seq, ev.last.Seq)
	}
	st, ok := ev.signers[c.KeyID]
	if !ok {
		return ev.errorf(c.Seq, "checkpoint key %q has no signer in the header", c.KeyID)
	}
	if err := ev.checkSigner(st, c); err != nil {
		return ev.errorf(c.Seq, "checkpoint signer %q (%s): %v", c.KeyID, st.leaf.Subject.CommonName, err)
	}
	if err := VerifyCheckpoint(st.leaf.PublicKey, c); err != nil {
		return ev.errorf(c.Seq, "bad checkpoint signature (key %q): %v (line altered)", c.KeyID, err)
	}
	if !bytes.Equal(c.Hash, ev.last.Hash) {
		return ev.errorf(c.Seq, "checkpoint signed by key %q does not match the hash of event %d (chain rewritten)", c.KeyID, c.Seq)
	}
	if !st.used {
		st.used = true
		ev.sum.Signers = append(ev.sum.Signers, st.leaf)
	}
	ev.sum.Checkpoints++
	ev.sum.Covered, ev.sum.CoveredBy = c, st.leaf
	return nil
}

// checkSigner checks that st's chain leads to a root at c.Time, reusing the
// last verified chain when c.Time is within the validity it shares.
func (ev *exportVerifier) checkSigner(st *exportSignerState, c Checkpoint) error {
	if st.verified && !c.Time.Before(st.notBefore) && !c.Time.After(st.notAfter) {
		return nil
	}
	chains, err := st.leaf.Verify(x509.VerifyOptions{
		Roots:         ev.roots,
		Intermediates: st.intermediates,
		CurrentTime:   c.Time,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return fmt.Errorf("not certified by the given root at the checkpoint time %s: %w", c.Time.Format(time.RFC3339), err)
	}
	st.notBefore, st.notAfter = time.Time{}, time.Time{}
	for i, cert := range chains[0] {
		if i == 0 || cert.NotBefore.After(st.notBefore) {
			st.notBefore = cert.NotBefore
		}
		if i == 0 || cert.NotAfter.Before(st.notAfter) {
			st.notAfter = cert.NotAfter
		}
	}
	st.verified = true
	return nil
}

func (ev *exportVerifier) end(line []byte) error {
	var l exportEndLine
	if err := ev.decode(line, &l); err != nil {
		return err
	}
	endLine := ev.line
	if _, more, err := ev.next(); err != nil || more {
		return ev.errorf(0, "data after the end line")
	}
	ev.line = endLine
	switch {
	case ev.last.Seq != ev.h.LastSeq:
		from := max(ev.last.Seq+1, ev.h.FirstSeq)
		return ev.errorf(from, "export ends at event %d but the header promises events up to %d: %s (lines removed?)",
			ev.last.Seq, ev.h.LastSeq, missingReason(from, ev.h.LastSeq))
	case ev.h.Events > 0 && ev.sum.Covered.Seq != ev.h.LastSeq:
		return ev.errorf(ev.h.LastSeq, "last event %d is not covered by a checkpoint (checkpoint line removed?)", ev.h.LastSeq)
	case l.Events != ev.sum.Events || l.Checkpoints != ev.sum.Checkpoints || l.LastSeq != ev.last.Seq:
		return ev.errorf(0, "end line counts %d events and %d checkpoints up to event %d, the file holds %d and %d up to %d (lines removed?)",
			l.Events, l.Checkpoints, l.LastSeq, ev.sum.Events, ev.sum.Checkpoints, ev.last.Seq)
	}
	return nil
}

// event decodes the event an event line carries.
func (l *exportEventLine) event() (Event, error) {
	e := Event{Seq: l.Seq, Time: l.Time.UTC(), Actor: l.Actor, Action: l.Action, Target: l.Target,
		Detail: l.Detail, PrevHash: l.PrevHash, Hash: l.Hash}
	if len(e.PrevHash) != HashSize || len(e.Hash) != HashSize {
		return Event{}, fmt.Errorf("prev_hash and hash must be %d bytes", HashSize)
	}
	switch l.Encoding {
	case "":
		return e, nil
	case encodingBase64:
	default:
		return Event{}, fmt.Errorf("unknown encoding %q", l.Encoding)
	}
	var err error
	unb64 := func(s string) string {
		b, derr := base64.StdEncoding.Strict().DecodeString(s)
		if derr != nil && err == nil {
			err = fmt.Errorf("bad base64 field: %w", derr)
		}
		return string(b)
	}
	e.Actor, e.Action, e.Target = unb64(l.Actor), unb64(l.Action), unb64(l.Target)
	if l.Detail != nil {
		e.Detail = make(map[string]string, len(l.Detail))
		for k, v := range l.Detail {
			e.Detail[unb64(k)] = unb64(v)
		}
	}
	return e, err
}
