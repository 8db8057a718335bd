package acme

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

type challengeView struct {
	Type      string           `json:"type"`
	URL       string           `json:"url"`
	Status    string           `json:"status"`
	Token     string           `json:"token"`
	Validated string           `json:"validated,omitempty"`
	Error     *json.RawMessage `json:"error,omitempty"`
}

type authzView struct {
	Identifier Identifier      `json:"identifier"`
	Status     string          `json:"status"`
	Expires    string          `json:"expires"`
	Challenges []challengeView `json:"challenges"`
	Wildcard   bool            `json:"wildcard,omitempty"`
}

func (s *Server) challengeView(r *http.Request, c store.ACMEChallenge) challengeView {
	v := challengeView{Type: c.Type, URL: s.url(r, "/chall/"+c.ID), Status: c.Status, Token: c.Token}
	if !c.Validated.IsZero() {
		v.Validated = c.Validated.Format(time.RFC3339)
	}
	if len(c.Error) > 0 {
		raw := json.RawMessage(c.Error)
		v.Error = &raw
	}
	return v
}

func (s *Server) authzView(r *http.Request, az store.ACMEAuthz) authzView {
	v := authzView{Identifier: Identifier{Type: az.Identifier.Type, Value: az.Identifier.Value}, Status: az.Status,
		Expires: az.Expires.Format(time.RFC3339), Wildcard: az.Wildcard}
	for _, c := range az.Challenges {
		// A valid authorization lists the challenge that proved it (§7.1.4).
		if az.Status == store.ACMEValid && c.Status != store.ACMEValid {
			continue
		}
		v.Challenges = append(v.Challenges, s.challengeView(r, c))
	}
	if v.Challenges == nil {
		v.Challenges = []challengeView{}
	}
	return v
}

// loadAuthz fetches an authorization of the requesting account, marking it
// expired when its time is up.
func (s *Server) loadAuthz(ctx context.Context, acct *store.ACMEAccount, id string) (store.ACMEAuthz, error) {
	az, err := s.st.ACMEAuthz(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && az.AccountID != acct.ID) {
		return store.ACMEAuthz{}, Malformed("no such authorization").WithStatus(http.StatusNotFound)
	}
	if err != nil {
		return store.ACMEAuthz{}, fmt.Errorf("load authorization: %w", err)
	}
	if (az.Status == store.ACMEPending || az.Status == store.ACMEValid) && s.clk.Now().After(az.Expires) {
		from := az.Status
		az.Status = store.ACMEExpired
		err := update(ctx, s.st, func(tx Tx) error { return tx.TransitionACMEAuthz(az.ID, az.Status, az.Expires, from) })
		if errors.Is(err, store.ErrStateChanged) {
			return s.loadAuthz(ctx, acct, id) // moved meanwhile: as it is now
		}
		if err != nil {
			return store.ACMEAuthz{}, fmt.Errorf("expire authorization: %w", err)
		}
	}
	return az, nil
}

func (s *Server) authz(w http.ResponseWriter, r *http.Request) error {
	p, err := s.readPost(r, false)
	if err != nil {
		return err
	}
	az, err := s.loadAuthz(r.Context(), p.account, r.PathValue("id"))
	if err != nil {
		return err
	}
	if len(p.jws.Payload) > 0 {
		var up struct {
			Status string `json:"status"`
		}
		if err := decodePayload(p.jws.Payload, &up); err != nil {
			return err
		}
		if up.Status != store.ACMEDeactivated {
			return Malformed("an authorization's status may only be set to deactivated")
		}
		if az.Status != store.ACMEPending && az.Status != store.ACMEValid {
			return Malformed("authorization is %s", az.Status)
		}
		from := az.Status
		az.Status = store.ACMEDeactivated
		err := update(r.Context(), s.st, func(tx Tx) error {
			if err := tx.TransitionACMEAuthz(az.ID, az.Status, az.Expires, from); err != nil {
				return err
			}
			return s.auditTx(tx, p.account, audit.ActionACMEAuthzDeactivated, az.ID, map[string]string{"identifier": az.Identifier.Value})
		})
		if errors.Is(err, store.ErrStateChanged) {
			return Malformed("authorization changed while being deactivated; fetch it again")
		}
		if err != nil {
			return fmt.Errorf("deactivate authorization: %w", err)
		}
	}
	return writeJSON(w, http.StatusOK, s.authzView(r, az))
}

// challenge answers POST-as-GET with the challenge, and a POST of {} by
// starting validation (RFC 8555 §7.5.1), which runs in the background.
func (s *Server) challenge(w http.ResponseWriter, r *http.Request) error {
	p, err := s.readPost(r, false)
	if err != nil {
		return err
	}
	c, err := s.st.ACMEChallenge(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		return Malformed("no such challenge").WithStatus(http.StatusNotFound)
	}
	if err != nil {
		return fmt.Errorf("load challenge: %w", err)
	}
	az, err := s.loadAuthz(r.Context(), p.account, c.AuthzID)
	if err != nil {
		return err
	}
	w.Header().Add("Link", link(s.url(r, "/authz/"+az.ID), "up"))
	if len(p.jws.Payload) == 0 || c.Status != store.ACMEPending {
		if c.Status == store.ACMEProcessing {
			w.Header().Set("Retry-After", "1")
		}
		return writeJSON(w, http.StatusOK, s.challengeView(r, c))
	}
	if az.Status != store.ACMEPending {
		// A concurrent POST may have started this challenge and its
		// validation settled the authorization after c was read: then the
		// answer is the challenge as it is now, as for any started one.
		if now, err := s.st.ACMEChallenge(r.Context(), c.ID); err == nil && now.Status != store.ACMEPending {
			return writeJSON(w, http.StatusOK, s.challengeView(r, now))
		}
		return Malformed("authorization is %s", az.Status)
	}
	keyAuth, err := KeyAuthorization(c.Token, p.key)
	if err != nil {
		return fmt.Errorf("key authorization: %w", err)
	}
	c.Status = store.ACMEProcessing
	err = update(r.Context(), s.st, func(tx Tx) error {
		// Of two POSTs that start one challenge, one validates.
		if err := tx.TransitionACMEChallenge(c, store.ACMEPending); err != nil {
			return err
		}
		return s.auditTx(tx, p.account, audit.ActionACMEChallengeStarted, c.ID, map[string]string{"type": c.Type, "identifier": az.Identifier.Value})
	})
	if errors.Is(err, store.ErrStateChanged) {
		if c, err = s.st.ACMEChallenge(r.Context(), c.ID); err != nil {
			return fmt.Errorf("load challenge: %w", err)
		}
		if c.Status == store.ACMEProcessing {
			w.Header().Set("Retry-After", "1")
		}
		return writeJSON(w, http.StatusOK, s.challengeView(r, c))
	}
	if err != nil {
		return fmt.Errorf("start challenge: %w", err)
	}
	s.validations.Add(1)
	done := make(chan struct{})
	acctURL := s.url(r, "/acct/"+p.account.ID)
	go func() {
		defer s.validations.Done()
		defer close(done)
		s.validate(*p.account, acctURL, az, c, keyAuth)
	}()
	// Most validations finish in milliseconds: answering with the outcome
	// spares the client a Retry-After round (RFC 8555 §7.5.1 allows either).
	select {
	case <-done:
		if fresh, err := s.st.ACMEChallenge(r.Context(), c.ID); err == nil {
			c = fresh
		}
	case <-time.After(s.cfg.ValidationWait):
	case <-r.Context().Done():
	}
	if c.Status == store.ACMEProcessing {
		w.Header().Set("Retry-After", "1")
	}
	return writeJSON(w, http.StatusOK, s.challengeView(r, c))
}

// validate checks one challenge and records the outcome on the challenge and
// its authorization. It runs detached from the request that started it.
func (s *Server) validate(acct store.ACMEAccount, acctURL string, az store.ACMEAuthz, c store.ACMEChallenge, keyAuth string) {
	s.sem <- struct{}{}
	defer func() { <-s.sem }()
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ValidationTimeout)
	defer cancel()
	err := s.check(ctx, acctURL, az, c, keyAuth)
	now := s.clk.Now().UTC()
	caaChecked := false
	if err == nil {
		c.Status, c.Validated, az.Status = store.ACMEValid, now, store.ACMEValid
		caaChecked = s.wantsCAA(az.Identifier)
		// A proven authorization lives for the reuse window, and at least
		// as long as it had left for the order that asked for it.
		if exp := now.Add(s.cfg.AuthzReuse); exp.After(az.Expires) {
			az.Expires = exp
		}
	} else {
		prob := FromError(err)
		c.Status, az.Status = store.ACMEInvalid, store.ACMEInvalid
		c.Error, _ = json.Marshal(prob)
	}
	werr := update(context.Background(), s.st, func(tx Tx) error {
		if err := tx.TransitionACMEChallenge(c, store.ACMEProcessing); err != nil {
			return err
		}
		// The authorization may have been deactivated (or expired) while
		// this ran: then the outcome is the challenge's alone, and a
		// deactivated authorization never turns valid.
		switch err := tx.TransitionACMEAuthz(az.ID, az.Status, az.Expires, store.ACMEPending); {
		case errors.Is(err, store.ErrStateChanged):
			caaChecked = false
		case err != nil:
			return err
		}
		if caaChecked {
			if err := tx.SetACMEAuthzCAAChecked(az.ID, now); err != nil {
				return err
			}
		}
		detail := map[string]string{"type": c.Type, "identifier": az.Identifier.Value, "status": c.Status}
		if err != nil {
			detail["error"] = FromError(err).Detail
		}
		return s.auditTx(tx, &acct, audit.ActionACMEChallengeValidated, c.ID, detail)
	})
	if werr != nil {
		s.log.Error("record challenge result", "challenge", c.ID, "error", werr)
	}
}

// check runs one challenge, retrying network failures (the target or its
// DNS may be coming up) up to ValidationRetries times within ctx, then
// checks CAA for a DNS identifier.
func (s *Server) check(ctx context.Context, acctURL string, az store.ACMEAuthz, c store.ACMEChallenge, keyAuth string) error {
	id := Identifier{Type: az.Identifier.Type, Value: az.Identifier.Value}
	for attempt := 0; ; attempt++ {
		var err error
		switch c.Type {
		case "http-01":
			err = s.challenger.HTTP01(ctx, id, c.Token, keyAuth)
		case "tls-alpn-01":
			err = s.challenger.TLSALPN01(ctx, id, keyAuth)
		case "dns-01":
			err = s.challenger.DNS01(ctx, az.Identifier.Value, keyAuth)
		default:
			return Malformed("unknown challenge type %q", c.Type)
		}
		if err == nil {
			break
		}
		if attempt >= s.cfg.ValidationRetries || !retryable(err) {
			return err
		}
		select {
		case <-s.clk.After(time.Duration(attempt+1) * time.Second):
		case <-ctx.Done():
			return err
		}
	}
	if !s.wantsCAA(az.Identifier) {
		return nil
	}
	return s.cfg.CAAVerifier.Check(ctx, id.Value, az.Wildcard, CAAParams{AccountURI: acctURL, Method: c.Type})
}

// wantsCAA reports whether an identifier gets CAA checks: a DNS name the
// endpoint's mode selects.
func (s *Server) wantsCAA(id store.ACMEIdentifier) bool {
	return id.Type == "dns" && s.wantCAA(id.Value)
}

// MaxCAAAge is the oldest a CAA check may be when a certificate is issued
// (CA/Browser Forum Baseline Requirements 3.2.2.8: CAA is checked within 8
// hours before issuance).
const MaxCAAAge = 8 * time.Hour

// recheckCAA checks CAA again, at issuance, for every authorization of o
// whose last check is older than CAAMaxAge, however young the
// authorization: a reused one may have been proven weeks ago. A check that
// passes is recorded on the authorization. A refusal by CAA ends the order
// (invalid, with the problem); a failed lookup leaves it ready to retry.
func (s *Server) recheckCAA(ctx context.Context, r *http.Request, acct *store.ACMEAccount, o *store.ACMEOrder) error {
	// Most orders name no CAA-checked name (internal names under auto):
	// they cost no authorization reads.
	if !slices.ContainsFunc(o.Identifiers, func(id store.ACMEIdentifier) bool {
		return s.wantsCAA(store.ACMEIdentifier{Type: id.Type, Value: strings.TrimPrefix(id.Value, "*.")})
	}) {
		return nil
	}
	now := s.clk.Now()
	var stale []store.ACMEAuthz
	for _, id := range o.AuthzIDs {
		az, err := s.st.ACMEAuthz(ctx, id)
		if err != nil {
			return fmt.Errorf("load authorization: %w", err)
		}
		if !s.wantsCAA(az.Identifier) {
			continue
		}
		if s.cfg.CAAMaxAge < 0 || az.CAAChecked.IsZero() || now.Sub(az.CAAChecked) > s.cfg.CAAMaxAge {
			stale = append(stale, az)
		}
	}
	if len(stale) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ValidationTimeout)
	defer cancel()
	acctURL := s.url(r, "/acct/"+acct.ID)
	errs := make([]error, len(stale))
	var wg sync.WaitGroup
	for i, az := range stale {
		wg.Add(1)
		go func() {
			defer wg.Done()
			method := ""
			for _, c := range az.Challenges {
				if c.Status == store.ACMEValid {
					method = c.Type
				}
			}
			errs[i] = s.cfg.CAAVerifier.Check(ctx, az.Identifier.Value, az.Wildcard, CAAParams{AccountURI: acctURL, Method: method})
		}()
	}
	wg.Wait()
	checked := s.clk.Now().UTC()
	var refused error
	for _, err := range errs {
		if err == nil {
			continue
		}
		if FromError(err).Type != TypeCAA {
			return err // a lookup that failed may succeed on a retry
		}
		if refused == nil {
			refused = err
		}
	}
	ready := *o
	err := update(ctx, s.st, func(tx Tx) error {
		if refused != nil {
			o.Status, o.Updated = store.ACMEInvalid, checked
			o.Error, _ = json.Marshal(FromError(refused))
			if err := tx.TransitionACMEOrder(*o, ready); err != nil {
				return err
			}
			return s.auditTx(tx, acct, audit.ActionACMEOrderCAARefused, o.ID, map[string]string{"error": FromError(refused).Detail})
		}
		for _, az := range stale {
			if err := tx.SetACMEAuthzCAAChecked(az.ID, checked); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, store.ErrStateChanged) {
		return OrderNotReady("order changed while its CAA records were checked")
	}
	if err != nil {
		return fmt.Errorf("record caa recheck: %w", err)
	}
	return refused
}

// retryable reports whether a failed validation may succeed if tried again
// soon: a network failure, not a wrong or missing answer.
func retryable(err error) bool {
	switch FromError(err).Type {
	case TypeConnection, TypeDNS, TypeTLS:
		return true
	}
	return false
}

// wantCAA reports whether name gets a CAA check under the endpoint's mode.
func (s *Server) wantCAA(name string) bool {
	switch s.cfg.CAA {
	case CAAOn:
		return true
	case CAAAuto:
		return PublicLooking(name)
	}
	return false
}

// Close waits for validations in flight.
func (s *Server) Close() { s.validations.Wait() }
