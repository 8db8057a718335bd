package main

import (
	"encoding/csv"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/api"
)

// ---------------------------------------------------------------------------
// Audit list and offline verification

func TestCLIAudit(t *testing.T) {
	t.Parallel()
	inProcess(t)
	c := initCA(t)
	p := startServe(t, c)
	first := e2eIssueSAN(t, p, c, "tls-server", "first.example")[0]
	second := e2eIssueSAN(t, p, c, "tls-client", "second.example")[0]

	t.Run("action csv", func(t *testing.T) {
		out, _ := e2eRun(t, e2eAdmin(p, c, "audit", "list", "--all", "--action", "cert.issued", "--format", "csv")...)
		recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
		if err != nil {
			t.Fatalf("csv: %v\n%s", err, out)
		}
		if want := []string{"SEQ", "TIME", "ACTOR", "ACTION", "TARGET", "DETAIL"}; !slices.Equal(recs[0], want) {
			t.Fatalf("csv header %v, want %v", recs[0], want)
		}
		targets := map[string]bool{}
		lastSeq := 0
		for _, r := range recs[1:] {
			if r[3] != "cert.issued" {
				t.Errorf("--action cert.issued listed %s", r[3])
			}
			seq, err := strconv.Atoi(r[0])
			if err != nil || seq <= lastSeq {
				t.Errorf("seq %q out of order after %d", r[0], lastSeq)
			}
			lastSeq = seq
			if _, err := time.Parse(time.RFC3339, r[1]); err != nil {
				t.Errorf("time %q: %v", r[1], err)
			}
			targets[r[4]] = true
		}
		for _, s := range []string{e2eSerial(first), e2eSerial(second)} {
			if !targets[s] {
				t.Errorf("cert.issued events lack serial %s", s)
			}
		}
		// One event per certificate in the record.
		if n, want := len(recs)-1, len(e2eListCerts(t, p, c)); n != want {
			t.Errorf("%d cert.issued events, %d certificates", n, want)
		}
	})

	t.Run("prefix", func(t *testing.T) {
		for _, e := range e2eListAudit(t, p, c, "--action", "cert.") {
			if !strings.HasPrefix(e.Action, "cert.") {
				t.Errorf("--action cert. listed %s", e.Action)
			}
		}
	})

	t.Run("since", func(t *testing.T) {
		all := e2eListAudit(t, p, c)
		var secondEvent *api.AuditEvent
		for i := range all {
			if all[i].Action == "cert.issued" && all[i].Target == e2eSerial(second) {
				secondEvent = &all[i]
			}
		}
		if secondEvent == nil {
			t.Fatal("no event for the second certificate")
		}
		since := secondEvent.Time
		got := e2eListAudit(t, p, c, "--since", since.Format(time.RFC3339Nano))
		var want []int64
		for _, e := range all {
			if !e.Time.Before(since) {
				want = append(want, e.Seq)
			}
		}
		var gotSeqs []int64
		for _, e := range got {
			gotSeqs = append(gotSeqs, e.Seq)
			if e.Time.Before(since) {
				t.Errorf("--since %s listed event %d at %s", since, e.Seq, e.Time)
			}
		}
		// Events appended after `all` was read (none expected) may follow.
		if len(gotSeqs) < len(want) || !slices.Equal(gotSeqs[:len(want)], want) {
			t.Errorf("--since %s: seqs %v, want %v", since, gotSeqs, want)
		}
		for _, e := range got {
			if e.Target == e2eSerial(first) {
				t.Errorf("--since listed the earlier certificate's event")
			}
		}
		if future := e2eListAudit(t, p, c, "--since", time.Now().Add(24*time.Hour).UTC().Format(time.RFC3339)); len(future) != 0 {
			t.Errorf("--since tomorrow listed %d events", len(future))
		}
		if past := e2eListAudit(t, p, c, "--since", "2000-01-01T00:00:00Z"); len(past) < len(all) {
			t.Errorf("--since 2000 listed %d of %d events", len(past), len(all))
		}
		e2eFail(t, e2eAdmin(p, c, "audit", "list", "--since", "yesterday")...)
	})

	t.Run("verify stopped database", func(t *testing.T) {
		events := e2eListAudit(t, p, c)
		p.stop(t)
		out, errOut := e2eRun(t, "audit", "verify", c.verifyArgs()[0], c.verifyArgs()[1], "--ca-file", c.root)
		m := e2eVerifyRe.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("audit verify output not understood:\n%s%s", out, errOut)
		}
		if want := strconv.Itoa(len(events)); m[1] != want {
			t.Errorf("audit verify counted %s events, audit list shows %s", m[1], want)
		}
		if m[3] != strconv.FormatInt(events[len(events)-1].Seq, 10) {
			t.Errorf("audit verify head %s, last listed event %d", m[3], events[len(events)-1].Seq)
		}
		if strings.Contains(errOut, "note:") {
			t.Errorf("with --ca-file the checkpoint keys should be certified by the root: %s", errOut)
		}
		// A root that is not this CA's fails.
		other := initCA(t)
		line := e2eFail(t, "audit", "verify", c.verifyArgs()[0], c.verifyArgs()[1], "--ca-file", other.root)
		if !strings.Contains(line, "FAILED") {
			t.Errorf("verification against a foreign root: %s", line)
		}
	})
}
