package ca

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/ca/audit"
)

// Refusals of requests whose caller never authenticated (no credential, a
// token that does not authenticate, a client certificate this CA does not
// know) cost an attacker nothing, so they must not cost the audit log an
// event each (issue 15): 3,000 of them once wrote 3,000 signed events. They
// are counted in sigil_unauthenticated_refusals_total, logged at most once
// per refusalLogEvery, and summed per source in memory; the audit log gets
// one access.refused.summary event per source and RefusalSummaryEvery.
// A refusal of an authenticated caller (a valid token of the wrong role, a
// known certificate that may not renew) is still audited one by one.

// Refusal is a refused request of a caller that is known (authenticated,
// or presenting a certificate of this CA), audited one by one by
// AuditRefusal.
type Refusal struct {
	// Action is audit.ActionRequestRefused unless set.
	Action string
	// Actor is the event's actor, as given.
	Actor string
	// Target is the event's target: only checked values (a normalized
	// serial, a valid name), never raw input, since the target is indexed.
	Target string
	// Detail is what was asked; AuditRefusal adds "reason" (the error's
	// kind) and "detail" (its client-safe detail). The map is not kept.
	Detail map[string]string
	// ReasonOnly leaves "detail" out, for refusals whose record has only
	// ever carried the reason (access.refused).
	ReasonOnly bool
	// Op names the refused operation in the error log line of an internal
	// failure ("issuance", "revoke", ...); LogAttrs are added to that line.
	Op       string
	LogAttrs []any
	// Err is the refusal.
	Err error
}

// AuditRefusal appends r as one audit event. The reason is the kind of
// r.Err and the detail its Detail, or "internal error" for an internal
// failure, whose cause is logged instead and never recorded. The write is
// best effort: its failure is logged, and the caller still gets the
// refusal. Every refusal of a known caller goes through here, so that all
// have one shape; unauthenticated ones go to RecordUnauthenticatedRefusal.
func (a *Authority) AuditRefusal(ctx context.Context, r Refusal) {
	kind := KindOf(r.Err)
	detail := "internal error"
	if e, ok := AsError(r.Err); ok && kind != Internal {
		detail = e.Detail
	}
	if kind == Internal {
		op := r.Op
		if op == "" {
			op = "request"
		}
		a.log.ErrorContext(ctx, op+" failed", append(r.LogAttrs, "error", r.Err)...)
	}
	ev := audit.Event{Time: a.clk.Now(), Actor: r.Actor, Action: r.Action, Target: r.Target,
		Detail: make(map[string]string, len(r.Detail)+2)}
	if ev.Action == "" {
		ev.Action = audit.ActionRequestRefused
	}
	maps.Copy(ev.Detail, r.Detail)
	ev.Detail["reason"] = kind.String()
	if !r.ReasonOnly {
		ev.Detail["detail"] = detail
	}
	a.auditBestEffort(ctx, ev)
}

// auditBestEffort appends ev in its own transaction, even if ctx is
// cancelled, and logs a failure: for events that record a refusal or a
// session, whose caller answers either way.
func (a *Authority) auditBestEffort(ctx context.Context, ev audit.Event) {
	if err := update(context.WithoutCancel(ctx), a.st, func(tx Tx) error {
		_, err := tx.AppendAudit(ev)
		return err
	}); err != nil {
		a.log.ErrorContext(ctx, "audit event", "action", ev.Action, "error", err)
	}
}

// RefusalSummaryEvery is how often the pending refusal summaries are
// written to the audit log: at most one event per source in each period.
const RefusalSummaryEvery = time.Minute

const (
	// refusalLogEvery bounds the log lines of unauthenticated refusals;
	// the next line counts those left out.
	refusalLogEvery = 10 * time.Second
	// maxRefusalSources bounds the sources kept between two summaries;
	// the refusals of any further source are summed as source "other".
	maxRefusalSources = 256
	// maxRefusalKeys bounds the distinct (surface, reason) pairs of one
	// source: both come from small fixed sets, this is a backstop.
	maxRefusalKeys = 32
	otherSource    = "other"
)

// UnauthenticatedRefusal is a request refused before its caller
// authenticated.
type UnauthenticatedRefusal struct {
	// Surface names what was asked for: "api", "renew", "managed.bundle",
	// "ui.login".
	Surface string
	// Source is the client address (host only), the unit the summaries
	// are kept by.
	Source string
	Method string
	Path   string
	// TokenID is the id part of a Sigil-shaped token, unverified; it goes
	// to the log only.
	TokenID string
	// Err is the refusal.
	Err error
}

// refusalTally is what one source was refused since the last summary.
type refusalTally struct {
	first, last time.Time
	count       int64
	by          map[string]int64 // "surface:reason" -> count
}

// refusalSummaries sums unauthenticated refusals per source between two
// flushes. It is safe for concurrent use.
type refusalSummaries struct {
	clk clockwork.Clock

	mu         sync.Mutex
	pending    map[string]*refusalTally
	lastLog    time.Time
	suppressed int64
}

func newRefusalSummaries(clk clockwork.Clock) *refusalSummaries {
	return &refusalSummaries{clk: clk, pending: map[string]*refusalTally{}}
}

// add counts r and reports whether it should be logged, with the number of
// refusals left out of the log since the last line.
func (s *refusalSummaries) add(r UnauthenticatedRefusal, reason string) (logIt bool, suppressed int64) {
	now := s.clk.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	src := r.Source
	if src == "" {
		src = "unknown"
	}
	t, ok := s.pending[src]
	if !ok {
		if len(s.pending) >= maxRefusalSources {
			src = otherSource
			t = s.pending[src]
		}
		if t == nil {
			t = &refusalTally{first: now, by: map[string]int64{}}
			s.pending[src] = t
		}
	}
	t.count++
	t.last = now
	key := r.Surface + ":" + reason
	if _, ok := t.by[key]; ok || len(t.by) < maxRefusalKeys {
		t.by[key]++
	} else {
		t.by["other"]++
	}
	if !s.lastLog.IsZero() && now.Sub(s.lastLog) < refusalLogEvery {
		s.suppressed++
		return false, 0
	}
	s.lastLog, suppressed, s.suppressed = now, s.suppressed, 0
	return true, suppressed
}

// take returns the pending tallies and starts afresh.
func (s *refusalSummaries) take() map[string]*refusalTally {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pending
	s.pending = map[string]*refusalTally{}
	return p
}

// RecordUnauthenticatedRefusal counts a request refused before its caller
// authenticated: a metric, a rate-limited log line, and the source's
// pending summary (see FlushRefusalSummaries). It writes nothing to the
// store, so that anonymous traffic cannot grow the audit log.
func (a *Authority) RecordUnauthenticatedRefusal(ctx context.Context, r UnauthenticatedRefusal) {
	reason := KindOf(r.Err).String()
	a.metrics.observeUnauthenticated(r.Surface, reason)
	logIt, suppressed := a.refusals.add(r, reason)
	if !logIt {
		return
	}
	attrs := []any{"surface", r.Surface, "source", r.Source, "reason", reason,
		"method", r.Method, "path", clip(r.Path, 256), "suppressed", suppressed}
	if r.TokenID != "" {
		attrs = append(attrs, "token_id", r.TokenID)
	}
	a.log.InfoContext(ctx, "unauthenticated request refused", attrs...)
}

// FlushRefusalSummaries writes one access.refused.summary audit event per
// source refused since the last flush (actor "anonymous", target the
// source; detail: count, first, last and the count per surface and reason),
// all in one transaction. RunRefusalSummaries calls it every
// RefusalSummaryEvery, so that a source gets at most one event a minute.
func (a *Authority) FlushRefusalSummaries(ctx context.Context) error {
	pending := a.refusals.take()
	if len(pending) == 0 {
		return nil
	}
	sources := make([]string, 0, len(pending))
	for src := range pending {
		sources = append(sources, src)
	}
	slices.Sort(sources)
	now := a.clk.Now().UTC()
	err := update(ctx, a.st, func(tx Tx) error {
		for _, src := range sources {
			t := pending[src]
			keys := make([]string, 0, len(t.by))
			for k := range t.by {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			var by strings.Builder
			for i, k := range keys {
				if i > 0 {
					by.WriteByte(',')
				}
				fmt.Fprintf(&by, "%s=%d", k, t.by[k])
			}
			ev := audit.Event{Time: now, Actor: "anonymous", Action: audit.ActionAccessRefusedSummary, Target: clip(src, 256),
				Detail: map[string]string{"count": strconv.FormatInt(t.count, 10), "first": t.first.UTC().Format(time.RFC3339Nano),
					"last": t.last.UTC().Format(time.RFC3339Nano), "by": by.String()}}
			if _, err := tx.AppendAudit(ev); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return internal("audit refusal summaries", err)
	}
	return nil
}

// RunRefusalSummaries flushes the refusal summaries every
// RefusalSummaryEvery on the authority's clock until ctx ends, then once
// more, so that what was counted before a shutdown is recorded.
func (a *Authority) RunRefusalSummaries(ctx context.Context) {
	tick := a.clk.NewTicker(RefusalSummaryEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := a.FlushRefusalSummaries(context.WithoutCancel(ctx)); err != nil {
				a.log.ErrorContext(ctx, "refusal summaries", "error", err)
			}
			return
		case <-tick.Chan():
			if err := a.FlushRefusalSummaries(ctx); err != nil {
				a.log.ErrorContext(ctx, "refusal summaries", "error", err)
			}
		}
	}
}
