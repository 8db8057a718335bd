package ca

import (
	"context"
	"errors"
	"unicode/utf8"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

// maxAuditedQuery bounds the query string an audit.read event keeps, so
// that a caller cannot grow the audit log by sending long URLs: the rest is
// cut and the event says so.
const maxAuditedQuery = 1024

// Access is the authority's gate as the HTTP surfaces (api, ui) use it:
// API tokens, created, listed, revoked, authenticated, and looked up again
// for every request of a web session, and the audit record of what
// callers read, of their web sessions and of their refused requests.
type Access struct{ a *Authority }

// Access returns the authority's gate for the HTTP surfaces.
func (a *Authority) Access() *Access { return &Access{a: a} }

// RecordUnauthenticatedRefusal is Authority.RecordUnauthenticatedRefusal.
func (x *Access) RecordUnauthenticatedRefusal(ctx context.Context, r UnauthenticatedRefusal) {
	x.a.RecordUnauthenticatedRefusal(ctx, r)
}

// RecordRead audits a read by an auditor, or any page view of the auditor
// web page: action audit.read, the principal as actor, and the method, path
// and query it asked for. It returns once the event is durable (it shares
// the store's group commit with concurrent writes), so that callers can
// refuse to answer a read they could not record.
func (x *Access) RecordRead(ctx context.Context, actor, method, path, query string) error {
	a := x.a
	d := map[string]string{"method": method, "path": path}
	if query != "" {
		if len(query) > maxAuditedQuery {
			cut := maxAuditedQuery
			for cut > 0 && !utf8.RuneStart(query[cut]) {
				cut--
			}
			query, d["query_truncated"] = query[:cut], "true"
		}
		d["query"] = query
	}
	ev := audit.Event{Time: a.clk.Now(), Actor: actor, Action: audit.ActionAuditRead, Target: path, Detail: d}
	if err := update(ctx, a.st, func(tx Tx) error {
		_, err := tx.AppendAudit(ev)
		return err
	}); err != nil {
		return internal("audit read", err)
	}
	return nil
}

// RecordSession audits a web session event of the auditor page (action
// such as ui.login, ui.logout or ui.login.refused) with the client address.
// A refusal's reason is the kind of err. Failures to record are logged:
// a refusal is answered either way.
func (x *Access) RecordSession(ctx context.Context, action, actor, remote string, err error) {
	a := x.a
	d := map[string]string{"remote": remote}
	if err != nil {
		d["reason"] = KindOf(err).String()
	}
	a.auditBestEffort(ctx, audit.Event{Time: a.clk.Now(), Actor: actor, Action: action, Detail: d})
}

// TokenPrincipal returns the principal of the token with id if it is still
// valid (not revoked, not expired), without its secret: a web session made
// from a token calls it on every request so that revoking the token ends
// the session. Any failure is Unauthorized, as for Authenticate.
func (x *Access) TokenPrincipal(ctx context.Context, id string) (Principal, error) {
	a := x.a
	rec, err := a.st.Token(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return Principal{}, errorf(Unauthorized, "invalid or expired token")
	}
	if err != nil {
		return Principal{}, internal("load token", err)
	}
	now := a.clk.Now()
	if !rec.Revoked.IsZero() || (!rec.Expires.IsZero() && !now.Before(rec.Expires)) {
		return Principal{}, errorf(Unauthorized, "invalid or expired token")
	}
	return Principal{TokenID: rec.ID, Role: rec.Role, Profiles: rec.Profiles, Managed: rec.Managed, Expires: rec.Expires}, nil
}
