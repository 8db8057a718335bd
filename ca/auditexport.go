package ca

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

// auditExportPage is how many events an export reads from the store at a
// time: its memory does not grow with the log.
const auditExportPage = 1000

// AuditExport is an audit export ready to stream: PrepareAuditExport fixed
// its range and header; Events and WriteNDJSON read the events.
type AuditExport struct {
	// Header is the export's first line; Header.Events is the number of
	// events the export holds.
	Header audit.ExportHeader
	st     Store
	// cps are the checkpoints of events in the range, by Seq.
	cps []audit.Checkpoint
}

// PrepareAuditExport signs a checkpoint of the audit head (unless it is
// signed already) and fixes an export of the events from the first one at or
// after since (every event when since is zero) up to that checkpoint, so the
// whole export is covered by a signed checkpoint and verifies offline with
// the root alone. Events appended meanwhile are left to the next export.
func (a *Authority) PrepareAuditExport(ctx context.Context, since time.Time) (*AuditExport, error) {
	if err := a.st.Checkpoint(ctx); err != nil {
		return nil, fmt.Errorf("audit export: checkpoint the head: %w", err)
	}
	all, err := a.st.Checkpoints(ctx)
	if err != nil {
		return nil, fmt.Errorf("audit export: %w", err)
	}
	x := &AuditExport{st: a.st, Header: audit.ExportHeader{
		CA: a.root.Cert.Subject.CommonName, Exported: a.clk.Now().UTC(), Since: since.UTC()}}
	var last int64
	for _, c := range all {
		last = max(last, c.Seq)
	}
	first := int64(1)
	if !since.IsZero() {
		evs, _, err := a.st.AuditEvents(ctx, store.AuditFilter{After: since, Limit: 1})
		if err != nil {
			return nil, fmt.Errorf("audit export: %w", err)
		}
		if len(evs) == 0 {
			return x, nil // nothing since
		}
		first = evs[0].Seq
	}
	if last == 0 || first > last {
		return x, nil
	}
	x.Header.FirstSeq, x.Header.LastSeq, x.Header.Events = first, last, last-first+1
	keys := map[string]bool{}
	for _, c := range all {
		if c.Seq < first || c.Seq > last {
			continue
		}
		x.cps = append(x.cps, c)
		if keys[c.KeyID] {
			continue
		}
		keys[c.KeyID] = true
		der, err := a.st.Setting(ctx, AuditCertSetting+c.KeyID)
		if err != nil {
			return nil, fmt.Errorf("audit export: certificate of audit key %s: %w", c.KeyID, err)
		}
		// The audit signer is issued by the root itself: its chain up to
		// the root is the one certificate.
		x.Header.Signers = append(x.Header.Signers, audit.ExportSigner{KeyID: c.KeyID, Chain: [][]byte{der}})
	}
	slices.SortStableFunc(x.cps, func(p, q audit.Checkpoint) int { return cmp.Compare(p.Seq, q.Seq) })
	return x, nil
}

// Events calls fn for each event of the export in Seq order, reading the
// store a page at a time.
func (x *AuditExport) Events(ctx context.Context, fn func(audit.Event) error) error {
	cursor := x.Header.FirstSeq - 1
	for cursor < x.Header.LastSeq {
		evs, _, err := x.st.AuditEvents(ctx, store.AuditFilter{Cursor: cursor, Limit: auditExportPage})
		if err != nil {
			return fmt.Errorf("audit export: %w", err)
		}
		if len(evs) == 0 {
			return fmt.Errorf("audit export: the log ends at event %d, before %d", cursor, x.Header.LastSeq)
		}
		for _, e := range evs {
			if e.Seq > x.Header.LastSeq {
				return nil
			}
			if err := fn(e); err != nil {
				return err
			}
			cursor = e.Seq
		}
	}
	return nil
}

// WriteNDJSON writes the export in the verifiable format of audit.ExportWriter
// to w, calling progress (if set) after each event with the number written
// so far; an error from progress stops the export.
func (x *AuditExport) WriteNDJSON(ctx context.Context, w io.Writer, progress func(n int64) error) error {
	xw, err := audit.NewExportWriter(w, x.Header)
	if err != nil {
		return err
	}
	var n int64
	next := 0
	err = x.Events(ctx, func(e audit.Event) error {
		if err := xw.WriteEvent(e); err != nil {
			return err
		}
		for ; next < len(x.cps) && x.cps[next].Seq <= e.Seq; next++ {
			if err := xw.WriteCheckpoint(x.cps[next]); err != nil {
				return err
			}
		}
		n++
		if progress != nil {
			return progress(n)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return xw.Close()
}
