package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/ca/audit"
)

// testACMEAccount returns an account of endpoint whose fields are all set.
func testACMEAccount(id, endpoint string) ACMEAccount {
	return ACMEAccount{
		ID:            id,
		Endpoint:      endpoint,
		KeyThumbprint: "thumb-" + id,
		KeyJWK:        []byte(`{"kty":"EC","crv":"P-256","x":"` + id + `","y":"y"}`),
		Status:        "valid",
		Contacts:      []string{"mailto:ops@example.com", "mailto:" + id + "@example.com"},
		TermsAgreed:   true,
		EABKeyID:      "eab-" + id,
		Requester:     "team:" + id,
		Created:       testStart,
	}
}

// seedACMEAccounts records an account of the default endpoint for each id.
func seedACMEAccounts(t testing.TB, s *SQLite, ids ...string) {
	t.Helper()
	mustTx(t, s, func(tx Tx) error {
		for _, id := range ids {
			if err := tx.InsertACMEAccount(testACMEAccount(id, "")); err != nil {
				return err
			}
		}
		return nil
	})
}

// testACMEOrder returns an order of account created at created, every field set.
func testACMEOrder(id, account string, created time.Time) ACMEOrder {
	return ACMEOrder{
		ID:          id,
		AccountID:   account,
		Endpoint:    "",
		Status:      "pending",
		Identifiers: []ACMEIdentifier{{Type: "dns", Value: "*.example.com"}, {Type: "ip", Value: "192.0.2.1"}},
		Profile:     "server",
		NotBefore:   created,
		NotAfter:    created.Add(90 * 24 * time.Hour),
		Expires:     created.Add(7 * 24 * time.Hour),
		AuthzIDs:    []string{"authz-" + id + "-1", "authz-" + id + "-2"},
		Replaces:    "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE",
		Error:       []byte(`{"type":"urn:ietf:params:acme:error:rejectedIdentifier"}`),
		Created:     created,
		Updated:     created.Add(time.Second),
	}
}

// testACMEAuthz returns an authorization with three challenges.
func testACMEAuthz(id, account string, ident ACMEIdentifier, wildcard bool, status string, expires time.Time) ACMEAuthz {
	a := ACMEAuthz{ID: id, AccountID: account, Status: status, Identifier: ident, Wildcard: wildcard, Expires: expires}
	for _, typ := range []string{"http-01", "dns-01", "tls-alpn-01"} {
		a.Challenges = append(a.Challenges, ACMEChallenge{ID: id + "-" + typ, AuthzID: id, Type: typ,
			Token: "token-" + id + "-" + typ, Status: "pending"})
	}
	return a
}

// TestACMEConcurrent runs many ACME transactions in one group-commit batch:
// each keeps its own writes, and races for one nonce or one EAB key have
// exactly one winner whose sibling writes commit while the losers' roll back.
func TestACMEConcurrent(t *testing.T) {
	t.Parallel()
	const writers = 32
	s := openTest(t, Config{})
	ctx := context.Background()
	seedACMEAccounts(t, s, "acct")
	mustTx(t, s, func(tx Tx) error { return tx.InsertEABKey(EABKey{ID: "shared-kid"}) })

	release := holdWriter(t, s)
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			errs[w] = s.WithTx(ctx, func(tx Tx) error {
				id := fmt.Sprintf("w%02d", w)
				// Only one account can bind the key: MarkEABKeyUsed decides.
				if err := tx.MarkEABKeyUsed("shared-kid", testStart.Add(time.Duration(w+1)*time.Second)); err != nil {
					return err
				}
				a := testACMEAccount("acct-"+id, "")
				a.EABKeyID = "shared-kid"
				if err := tx.InsertACMEAccount(a); err != nil {
					return err
				}
				if err := tx.InsertACMEOrder(testACMEOrder("order-"+id, a.ID, testStart.Add(time.Duration(w)*time.Second))); err != nil {
					return err
				}
				authz := testACMEAuthz("authz-"+id, a.ID, ACMEIdentifier{Type: "dns", Value: id + ".example.com"}, false, "valid",
					testStart.Add(time.Hour))
				if err := tx.InsertACMEAuthz(authz); err != nil {
					return err
				}
				if err := tx.UseNonce("nonce-"+id, testStart.Add(time.Minute)); err != nil {
					return err
				}
				_, err := tx.AppendAudit(audit.Event{Time: testStart, Actor: "acme:" + a.ID, Action: "acme.account.created"})
				return err
			})
		})
	}
	waitQueued(t, s, writers)
	release()
	wg.Wait()

	winner := -1
	for w, err := range errs {
		switch {
		case err == nil && winner < 0:
			winner = w
		case err == nil:
			t.Errorf("writers %d and %d both bound the EAB key", winner, w)
		case !errors.Is(err, ErrDuplicate):
			t.Errorf("writer %d: %v, want nil or ErrDuplicate", w, err)
		}
	}
	if winner < 0 {
		t.Fatal("no writer committed")
	}
	for w := range writers {
		id := fmt.Sprintf("w%02d", w)
		_, aerr := s.ACMEAccount(ctx, "acct-"+id)
		_, oerr := s.ACMEOrder(ctx, "order-"+id)
		_, zerr := s.ACMEReusableAuthz(ctx, "acct-"+id, ACMEIdentifier{Type: "dns", Value: id + ".example.com"}, false, testStart)
		nerr := s.WithTx(ctx, func(tx Tx) error { return tx.UseNonce("nonce-"+id, testStart) })
		if w == winner {
			if aerr != nil || oerr != nil || zerr != nil || !errors.Is(nerr, ErrDuplicate) {
				t.Errorf("winner %d: account %v, order %v, authz %v, nonce reuse %v", w, aerr, oerr, zerr, nerr)
			}
			continue
		}
		if !errors.Is(aerr, ErrNotFound) || !errors.Is(oerr, ErrNotFound) || !errors.Is(zerr, ErrNotFound) || nerr != nil {
			t.Errorf("loser %d left writes: account %v, order %v, authz %v, nonce reuse %v", w, aerr, oerr, zerr, nerr)
		}
	}
	if k, _ := s.EABKey(ctx, "shared-kid"); !k.Used.Equal(testStart.Add(time.Duration(winner+1) * time.Second)) {
		t.Errorf("EAB key used at %v, want the winner's time", k.Used)
	}
	if events := checkChain(t, s, nil); len(events) != 1 {
		t.Errorf("%d audit events, want the winner's 1", len(events))
	}

	// Independent writers all commit.
	wg = sync.WaitGroup{}
	for w := range writers {
		wg.Go(func() {
			err := s.WithTx(ctx, func(tx Tx) error {
				if err := tx.UseNonce(fmt.Sprintf("fresh-%02d", w), testStart.Add(time.Minute)); err != nil {
					return err
				}
				return tx.InsertACMEOrder(testACMEOrder(fmt.Sprintf("acct-order-%02d", w), "acct", testStart.Add(time.Duration(w)*time.Second)))
			})
			if err != nil {
				t.Errorf("writer %d: %v", w, err)
			}
		})
	}
	wg.Wait()
	orders, next, err := s.ACMEOrders(ctx, "acct", "", 100)
	if err != nil || next != "" || len(orders) != writers {
		t.Errorf("ACMEOrders = %d orders, next %q, %v; want %d", len(orders), next, err, writers)
	}
}
