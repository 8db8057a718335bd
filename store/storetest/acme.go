package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/store"
)

// testACMEAccount returns an account of endpoint whose fields are all set.
func testACMEAccount(id, endpoint string) store.ACMEAccount {
	return store.ACMEAccount{
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
func seedACMEAccounts(t testing.TB, s store.Store, ids ...string) {
	t.Helper()
	mustTx(t, s, func(tx store.Tx) error {
		for _, id := range ids {
			if err := tx.InsertACMEAccount(testACMEAccount(id, "")); err != nil {
				return err
			}
		}
		return nil
	})
}

// testACMEOrder returns an order of account created at created, every field set.
func testACMEOrder(id, account string, created time.Time) store.ACMEOrder {
	return store.ACMEOrder{
		ID:          id,
		AccountID:   account,
		Endpoint:    "",
		Status:      "pending",
		Identifiers: []store.ACMEIdentifier{{Type: "dns", Value: "*.example.com"}, {Type: "ip", Value: "192.0.2.1"}},
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
func testACMEAuthz(id, account string, ident store.ACMEIdentifier, wildcard bool, status string, expires time.Time) store.ACMEAuthz {
	a := store.ACMEAuthz{ID: id, AccountID: account, Status: status, Identifier: ident, Wildcard: wildcard, Expires: expires}
	for _, typ := range []string{"http-01", "dns-01", "tls-alpn-01"} {
		a.Challenges = append(a.Challenges, store.ACMEChallenge{ID: id + "-" + typ, AuthzID: id, Type: typ,
			Token: "token-" + id + "-" + typ, Status: "pending"})
	}
	return a
}

// orderIDs lists the orders' ids in the order given.
func orderIDs(orders []store.ACMEOrder) []string {
	out := []string{}
	for _, o := range orders {
		out = append(out, o.ID)
	}
	return out
}

// pageOrders follows cursors for account until the last page, calling
// between after each page but the last, and returns the pages' ids.
func pageOrders(t *testing.T, s store.Store, account string, limit int, between func()) [][]string {
	t.Helper()
	var pages [][]string
	cursor := ""
	for {
		if len(pages) > 1000 {
			t.Fatal("pagination does not end")
		}
		orders, next, err := s.ACMEOrders(context.Background(), account, cursor, limit)
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, orderIDs(orders))
		if next == "" {
			return pages
		}
		if len(orders) == 0 {
			t.Fatalf("empty page with next cursor %q", next)
		}
		cursor = next
		if between != nil {
			between()
		}
	}
}

func testACMEAccountRoundTrip(t *testing.T, open Opener) {
	t.Parallel()
	s := openTest(t, open)
	ctx := context.Background()
	full := testACMEAccount("acct-full", "")
	bare := store.ACMEAccount{ID: "acct-bare", Endpoint: "internal", KeyThumbprint: "thumb-bare", KeyJWK: []byte(`{}`),
		Status: "valid", Requester: "acme:acct-bare", Created: testStart.Add(time.Minute)}
	// The same key may hold an account on another endpoint.
	sameKey := testACMEAccount("acct-other-endpoint", "internal")
	sameKey.KeyThumbprint, sameKey.EABKeyID = full.KeyThumbprint, ""
	mustTx(t, s, func(tx store.Tx) error {
		for _, a := range []store.ACMEAccount{full, bare, sameKey} {
			if err := tx.InsertACMEAccount(a); err != nil {
				return err
			}
		}
		return nil
	})
	for _, want := range []store.ACMEAccount{full, bare, sameKey} {
		if got, err := s.ACMEAccount(ctx, want.ID); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ACMEAccount(%s) = %+v, %v; want %+v", want.ID, got, err, want)
		}
		got, err := s.ACMEAccountByKey(ctx, want.Endpoint, want.KeyThumbprint)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ACMEAccountByKey(%q, %s) = %+v, %v; want %+v", want.Endpoint, want.KeyThumbprint, got, err, want)
		}
	}
	if _, err := s.ACMEAccountByKey(ctx, "elsewhere", full.KeyThumbprint); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ACMEAccountByKey on another endpoint = %v, want ErrNotFound", err)
	}

	t.Run("update", func(t *testing.T) {
		upd := full
		upd.Status, upd.Contacts, upd.TermsAgreed = "deactivated", nil, false
		// Fields an update never changes.
		upd.Endpoint, upd.EABKeyID, upd.Requester, upd.Created = "ignored", "ignored", "ignored", testStart.Add(time.Hour)
		mustTx(t, s, func(tx store.Tx) error { return tx.UpdateACMEAccount(upd) })
		want := full
		want.Status, want.Contacts, want.TermsAgreed = "deactivated", nil, false
		if got, err := s.ACMEAccount(ctx, full.ID); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("after update = %+v, %v; want %+v", got, err, want)
		}
	})
	t.Run("key change", func(t *testing.T) {
		before, err := s.ACMEAccount(ctx, bare.ID)
		if err != nil {
			t.Fatal(err)
		}
		changed := before
		changed.KeyThumbprint, changed.KeyJWK = "thumb-new", []byte(`{"kty":"OKP"}`)
		mustTx(t, s, func(tx store.Tx) error { return tx.UpdateACMEAccount(changed) })
		if got, err := s.ACMEAccountByKey(ctx, "internal", "thumb-new"); err != nil || !reflect.DeepEqual(got, changed) {
			t.Errorf("by new key = %+v, %v; want %+v", got, err, changed)
		}
		if _, err := s.ACMEAccountByKey(ctx, "internal", "thumb-bare"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("by old key = %v, want ErrNotFound", err)
		}

		// RFC 8555 §7.3.5: a key already bound to an account of the endpoint is refused.
		taken := changed
		taken.KeyThumbprint, taken.KeyJWK = sameKey.KeyThumbprint, []byte(`{"taken":true}`)
		err = s.WithTx(ctx, func(tx store.Tx) error { return tx.UpdateACMEAccount(taken) })
		if !errors.Is(err, store.ErrDuplicate) {
			t.Errorf("key change to a taken thumbprint = %v, want ErrDuplicate", err)
		}
		if got, _ := s.ACMEAccount(ctx, bare.ID); !reflect.DeepEqual(got, changed) {
			t.Errorf("refused key change left %+v, want %+v", got, changed)
		}
	})
	t.Run("update missing", func(t *testing.T) {
		err := s.WithTx(ctx, func(tx store.Tx) error { return tx.UpdateACMEAccount(testACMEAccount("acct-missing", "")) })
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("UpdateACMEAccount(missing) = %v, want ErrNotFound", err)
		}
	})
}

func testACMEOrderRoundTrip(t *testing.T, open Opener) {
	t.Parallel()
	s := openTest(t, open)
	ctx := context.Background()
	seedACMEAccounts(t, s, "acct")
	full := testACMEOrder("order-full", "acct", testStart)
	full.Endpoint = "internal"
	bare := store.ACMEOrder{ID: "order-bare", AccountID: "acct", Status: "pending",
		Identifiers: []store.ACMEIdentifier{{Type: "dns", Value: "example.com"}}, Expires: testStart.Add(time.Hour),
		Created: testStart, Updated: testStart}
	mustTx(t, s, func(tx store.Tx) error {
		if err := tx.InsertACMEOrder(full); err != nil {
			return err
		}
		return tx.InsertACMEOrder(bare)
	})
	for _, want := range []store.ACMEOrder{full, bare} {
		if got, err := s.ACMEOrder(ctx, want.ID); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ACMEOrder(%s) =\n%+v, %v\nwant\n%+v", want.ID, got, err, want)
		}
	}

	tests := []struct {
		name   string
		change func(o *store.ACMEOrder)
	}{
		{"ready", func(o *store.ACMEOrder) { o.Status, o.Error = "ready", nil }},
		{"valid", func(o *store.ACMEOrder) { o.Status, o.CertSerial = "valid", "7f3a9c" }},
		{"invalid with error", func(o *store.ACMEOrder) {
			o.Status, o.Error = "invalid", []byte(`{"type":"urn:ietf:params:acme:error:unauthorized"}`)
		}},
		{"new authorizations", func(o *store.ACMEOrder) { o.AuthzIDs = []string{"authz-x"} }},
		{"empty error is none", func(o *store.ACMEOrder) { o.Error = []byte{} }},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, err := s.ACMEOrder(ctx, full.ID)
			if err != nil {
				t.Fatal(err)
			}
			want := before
			tt.change(&want)
			want.Updated = testStart.Add(time.Duration(i+1) * time.Minute)
			upd := want
			// Fields an update never changes.
			upd.Profile, upd.Replaces, upd.Expires, upd.Identifiers = "ignored", "ignored", testStart, nil
			mustTx(t, s, func(tx store.Tx) error { return tx.TransitionACMEOrder(upd, before) })
			if len(want.Error) == 0 {
				want.Error = nil
			}
			if got, err := s.ACMEOrder(ctx, full.ID); err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("after update =\n%+v, %v\nwant\n%+v", got, err, want)
			}
		})
	}
	t.Run("update missing", func(t *testing.T) {
		missing := testACMEOrder("order-missing", "acct", testStart)
		err := s.WithTx(ctx, func(tx store.Tx) error { return tx.TransitionACMEOrder(missing, missing) })
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("TransitionACMEOrder(missing) = %v, want ErrNotFound", err)
		}
	})
	t.Run("unknown account", func(t *testing.T) {
		err := s.WithTx(ctx, func(tx store.Tx) error { return tx.InsertACMEOrder(testACMEOrder("order-orphan", "nobody", testStart)) })
		if err == nil {
			t.Error("InsertACMEOrder for an unknown account succeeded")
		}
	})
}

func testACMEAuthzRoundTrip(t *testing.T, open Opener) {
	t.Parallel()
	s := openTest(t, open)
	ctx := context.Background()
	seedACMEAccounts(t, s, "acct")
	dns := testACMEAuthz("authz-dns", "acct", store.ACMEIdentifier{Type: "dns", Value: "example.com"}, false, "pending",
		testStart.Add(time.Hour))
	wild := testACMEAuthz("authz-wild", "acct", store.ACMEIdentifier{Type: "dns", Value: "example.com"}, true, "pending",
		testStart.Add(time.Hour))
	wild.Challenges = wild.Challenges[1:2] // dns-01 only
	wild.Challenges[0].AuthzID = ""        // taken to be the authorization's
	ip := store.ACMEAuthz{ID: "authz-ip", AccountID: "acct", Status: "valid", Identifier: store.ACMEIdentifier{Type: "ip", Value: "2001:db8::1"},
		Expires: testStart.Add(2 * time.Hour)} // no challenges
	mustTx(t, s, func(tx store.Tx) error {
		for _, a := range []store.ACMEAuthz{dns, wild, ip} {
			if err := tx.InsertACMEAuthz(a); err != nil {
				return err
			}
		}
		return nil
	})
	wild.Challenges[0].AuthzID = wild.ID
	for _, want := range []store.ACMEAuthz{dns, wild, ip} {
		if got, err := s.ACMEAuthz(ctx, want.ID); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ACMEAuthz(%s) =\n%+v, %v\nwant\n%+v", want.ID, got, err, want)
		}
		for _, c := range want.Challenges {
			if got, err := s.ACMEChallenge(ctx, c.ID); err != nil || !reflect.DeepEqual(got, c) {
				t.Errorf("ACMEChallenge(%s) = %+v, %v; want %+v", c.ID, got, err, c)
			}
		}
	}

	t.Run("validate", func(t *testing.T) {
		c := dns.Challenges[0]
		c.Status = "processing"
		mustTx(t, s, func(tx store.Tx) error { return tx.TransitionACMEChallenge(c, "pending") })
		if got, _ := s.ACMEChallenge(ctx, c.ID); !reflect.DeepEqual(got, c) {
			t.Errorf("processing challenge = %+v, want %+v", got, c)
		}
		c.Status, c.Validated = "valid", testStart.Add(time.Minute)
		c.Type, c.Token, c.AuthzID = "ignored", "ignored", "ignored" // never changed
		mustTx(t, s, func(tx store.Tx) error {
			if err := tx.TransitionACMEChallenge(c, "processing"); err != nil {
				return err
			}
			if err := tx.TransitionACMEAuthz(dns.ID, "valid", time.Time{}, "pending"); err != nil {
				return err
			}
			return tx.TransitionACMEAuthz(dns.ID, "valid", time.Time{}, "valid") // again: succeeds
		})
		want := dns
		want.Status = "valid"
		want.Challenges = slices.Clone(dns.Challenges)
		want.Challenges[0].Status, want.Challenges[0].Validated = "valid", c.Validated
		if got, err := s.ACMEAuthz(ctx, dns.ID); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("validated authz =\n%+v, %v\nwant\n%+v", got, err, want)
		}
		// A non-zero expiry is set with the status (a proven authorization
		// lives for the reuse window).
		want.Expires = testStart.Add(30 * 24 * time.Hour)
		mustTx(t, s, func(tx store.Tx) error { return tx.TransitionACMEAuthz(dns.ID, "valid", want.Expires, "valid") })
		if got, err := s.ACMEAuthz(ctx, dns.ID); err != nil || !got.Expires.Equal(want.Expires) {
			t.Errorf("authz expiry = %v, %v; want %v", got.Expires, err, want.Expires)
		}
	})
	t.Run("caa checked", func(t *testing.T) {
		// Inserted with a check time (reads back), then set and set again.
		checked := ip
		checked.ID, checked.CAAChecked = "authz-caa", testStart.Add(-time.Hour)
		mustTx(t, s, func(tx store.Tx) error { return tx.InsertACMEAuthz(checked) })
		if got, err := s.ACMEAuthz(ctx, checked.ID); err != nil || !got.CAAChecked.Equal(checked.CAAChecked) {
			t.Errorf("inserted CAAChecked = %v, %v; want %v", got.CAAChecked, err, checked.CAAChecked)
		}
		for _, at := range []time.Time{testStart.Add(time.Minute), testStart.Add(9 * time.Hour)} {
			mustTx(t, s, func(tx store.Tx) error { return tx.SetACMEAuthzCAAChecked(checked.ID, at) })
			got, err := s.ACMEAuthz(ctx, checked.ID)
			if err != nil || !got.CAAChecked.Equal(at) || got.Status != checked.Status || !got.Expires.Equal(checked.Expires) {
				t.Errorf("after SetACMEAuthzCAAChecked(%v): %+v, %v", at, got, err)
			}
			reused, err := s.ACMEReusableAuthz(ctx, "acct", checked.Identifier, false, testStart)
			if err != nil || reused.ID != checked.ID || !reused.CAAChecked.Equal(at) {
				t.Errorf("reusable authz %+v, %v; want %s checked at %v", reused, err, checked.ID, at)
			}
		}
		if err := s.WithTx(ctx, func(tx store.Tx) error { return tx.SetACMEAuthzCAAChecked("authz-missing", testStart) }); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("SetACMEAuthzCAAChecked(missing) = %v, want ErrNotFound", err)
		}
	})
	t.Run("invalid with error", func(t *testing.T) {
		c := wild.Challenges[0]
		c.Status, c.Error = "invalid", []byte(`{"type":"urn:ietf:params:acme:error:dns","detail":"NXDOMAIN"}`)
		mustTx(t, s, func(tx store.Tx) error { return tx.TransitionACMEChallenge(c, "pending") })
		if got, _ := s.ACMEChallenge(ctx, c.ID); !reflect.DeepEqual(got, c) {
			t.Errorf("invalid challenge = %+v, want %+v", got, c)
		}
	})
	t.Run("update missing", func(t *testing.T) {
		if err := s.WithTx(ctx, func(tx store.Tx) error {
			return tx.TransitionACMEAuthz("authz-missing", "valid", time.Time{}, "pending")
		}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("TransitionACMEAuthz(missing) = %v, want ErrNotFound", err)
		}
		err := s.WithTx(ctx, func(tx store.Tx) error {
			return tx.TransitionACMEChallenge(store.ACMEChallenge{ID: "chall-missing", Status: "valid"}, "pending")
		})
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("TransitionACMEChallenge(missing) = %v, want ErrNotFound", err)
		}
	})
	t.Run("challenge of another authz", func(t *testing.T) {
		a := testACMEAuthz("authz-bad", "acct", store.ACMEIdentifier{Type: "dns", Value: "bad.example"}, false, "pending", testStart)
		a.Challenges[2].AuthzID = "authz-dns"
		if err := s.WithTx(ctx, func(tx store.Tx) error { return tx.InsertACMEAuthz(a) }); err == nil {
			t.Error("InsertACMEAuthz with a foreign challenge succeeded")
		}
		// The refused authorization left nothing, not even its first challenges.
		if _, err := s.ACMEAuthz(ctx, a.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("ACMEAuthz(refused) = %v, want ErrNotFound", err)
		}
		if _, err := s.ACMEChallenge(ctx, a.Challenges[0].ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("ACMEChallenge(refused) = %v, want ErrNotFound", err)
		}
	})
}

func testACMEOrdersPagination(t *testing.T, open Opener) {
	t.Parallel()
	const total = 25
	s := openTest(t, open)
	seedACMEAccounts(t, s, "acct-a", "acct-b", "acct-none")
	// Pairs of orders share a creation time, so ties are broken by id; b's
	// orders are interleaved with a's.
	var wantA []string // newest first
	mustTx(t, s, func(tx store.Tx) error {
		for i := range total {
			created := testStart.Add(time.Duration(i/2) * time.Second)
			o := testACMEOrder(fmt.Sprintf("a-%02d", i), "acct-a", created)
			if err := tx.InsertACMEOrder(o); err != nil {
				return err
			}
			wantA = slices.Insert(wantA, 0, o.ID)
			if i%5 == 0 {
				if err := tx.InsertACMEOrder(testACMEOrder(fmt.Sprintf("b-%02d", i), "acct-b", created)); err != nil {
					return err
				}
			}
		}
		return nil
	})

	tests := []struct {
		name    string
		account string
		limit   int
		want    [][]string
	}{
		{"limit 10", "acct-a", 10, [][]string{wantA[:10], wantA[10:20], wantA[20:]}},
		{"limit divides total", "acct-a", 5, [][]string{wantA[:5], wantA[5:10], wantA[10:15], wantA[15:20], wantA[20:]}},
		{"limit above total", "acct-a", 100, [][]string{wantA}},
		{"default limit", "acct-a", 0, [][]string{wantA}},
		{"other account", "acct-b", 2, [][]string{{"b-20", "b-15"}, {"b-10", "b-05"}, {"b-00"}}},
		{"no orders", "acct-none", 10, [][]string{{}}},
		{"unknown account", "acct-missing", 10, [][]string{{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := pageOrders(t, s, tt.account, tt.limit, nil); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("pages = %v, want %v", got, tt.want)
			}
		})
	}
	t.Run("inserts between pages", func(t *testing.T) {
		t.Parallel()
		s := openTest(t, open)
		seedACMEAccounts(t, s, "acct")
		var want []string
		mustTx(t, s, func(tx store.Tx) error {
			for i := range total {
				o := testACMEOrder(fmt.Sprintf("o-%02d", i), "acct", testStart.Add(time.Duration(i)*time.Second))
				want = slices.Insert(want, 0, o.ID)
				if err := tx.InsertACMEOrder(o); err != nil {
					return err
				}
			}
			return nil
		})
		added := 0
		pages := pageOrders(t, s, "acct", 10, func() {
			added++
			o := testACMEOrder(fmt.Sprintf("new-%02d", added), "acct", testStart.Add(time.Hour+time.Duration(added)*time.Second))
			mustTx(t, s, func(tx store.Tx) error { return tx.InsertACMEOrder(o) })
		})
		if got := slices.Concat(pages...); !slices.Equal(got, want) {
			t.Errorf("paged %v, want the %d orders present when paging began", got, len(want))
		}
		if added != 2 {
			t.Errorf("%d page boundaries, want 2", added)
		}
	})
	t.Run("bad cursor", func(t *testing.T) {
		t.Parallel()
		for _, c := range []string{"!!", "bm9kb3Q", "eC55"} { // not base64, "nodot", "x.y"
			if _, _, err := s.ACMEOrders(context.Background(), "acct-a", c, 10); err == nil {
				t.Errorf("ACMEOrders(cursor %q) succeeded, want an error", c)
			}
		}
	})
}

func testACMEReusableAuthz(t *testing.T, open Opener) {
	t.Parallel()
	s := openTest(t, open)
	ctx := context.Background()
	seedACMEAccounts(t, s, "acct", "other")
	now := testStart.Add(24 * time.Hour)
	name := store.ACMEIdentifier{Type: "dns", Value: "example.com"}
	authzs := []store.ACMEAuthz{
		testACMEAuthz("valid-1h", "acct", name, false, "valid", now.Add(time.Hour)),
		testACMEAuthz("valid-2h", "acct", name, false, "valid", now.Add(2*time.Hour)),
		testACMEAuthz("pending-3h", "acct", name, false, "pending", now.Add(3*time.Hour)),
		testACMEAuthz("invalid-3h", "acct", name, false, "invalid", now.Add(3*time.Hour)),
		testACMEAuthz("deactivated-3h", "acct", name, false, "deactivated", now.Add(3*time.Hour)),
		testACMEAuthz("revoked-3h", "acct", name, false, "revoked", now.Add(3*time.Hour)),
		testACMEAuthz("valid-expired", "acct", store.ACMEIdentifier{Type: "dns", Value: "old.example.com"}, false, "valid", now.Add(-time.Minute)),
		testACMEAuthz("valid-expires-now", "acct", store.ACMEIdentifier{Type: "dns", Value: "old.example.com"}, false, "valid", now),
		testACMEAuthz("other-account", "other", name, false, "valid", now.Add(3*time.Hour)),
		testACMEAuthz("wildcard", "acct", name, true, "valid", now.Add(3*time.Hour)),
		testACMEAuthz("other-name", "acct", store.ACMEIdentifier{Type: "dns", Value: "www.example.com"}, false, "valid", now.Add(3*time.Hour)),
		testACMEAuthz("ip-same-text", "acct", store.ACMEIdentifier{Type: "ip", Value: "example.com"}, false, "valid", now.Add(3*time.Hour)),
	}
	authzs[1].Challenges[0].Status, authzs[1].Challenges[0].Validated = "valid", testStart
	mustTx(t, s, func(tx store.Tx) error {
		for _, a := range authzs {
			if err := tx.InsertACMEAuthz(a); err != nil {
				return err
			}
		}
		return nil
	})
	byID := make(map[string]store.ACMEAuthz)
	for _, a := range authzs {
		byID[a.ID] = a
	}

	tests := []struct {
		name     string
		account  string
		ident    store.ACMEIdentifier
		wildcard bool
		now      time.Time
		want     string // "" for ErrNotFound
	}{
		{"latest expiry", "acct", name, false, now, "valid-2h"},
		{"remaining lifetime required", "acct", name, false, now.Add(90 * time.Minute), "valid-2h"},
		{"none long enough", "acct", name, false, now.Add(2 * time.Hour), ""},
		{"wildcard", "acct", name, true, now, "wildcard"},
		{"other account", "other", name, false, now, "other-account"},
		{"other account has no wildcard", "other", name, true, now, ""},
		{"other name", "acct", store.ACMEIdentifier{Type: "dns", Value: "www.example.com"}, false, now, "other-name"},
		{"identifier type matters", "acct", store.ACMEIdentifier{Type: "ip", Value: "example.com"}, false, now, "ip-same-text"},
		{"expired or expiring now", "acct", store.ACMEIdentifier{Type: "dns", Value: "old.example.com"}, false, now, ""},
		{"before expiry", "acct", store.ACMEIdentifier{Type: "dns", Value: "old.example.com"}, false, now.Add(-time.Hour), "valid-expires-now"},
		{"unknown name", "acct", store.ACMEIdentifier{Type: "dns", Value: "nowhere.example"}, false, now, ""},
		{"unknown account", "nobody", name, false, now, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := s.ACMEReusableAuthz(ctx, tt.account, tt.ident, tt.wildcard, tt.now)
			if tt.want == "" {
				if !errors.Is(err, store.ErrNotFound) {
					t.Errorf("= %s, %v; want ErrNotFound", got.ID, err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, byID[tt.want]) {
				t.Errorf("=\n%+v, %v\nwant\n%+v", got, err, byID[tt.want])
			}
		})
	}
}

// testACMECertOrder: a certificate's order is found by its serial, and tidy
// keeps an expired order as long as its certificate is live, so that the
// account and endpoint it belongs to stay known.
func testACMECertOrder(t *testing.T, open Opener) {
	t.Parallel()
	s := openTest(t, open)
	ctx := context.Background()
	seedIssuers(t, s, "int")
	seedACMEAccounts(t, s, "acct")
	created := testStart.Add(-200 * 24 * time.Hour) // the order expired long ago
	live, gone, pending := testACMEOrder("o-live", "acct", created), testACMEOrder("o-gone", "acct", created), testACMEOrder("o-pending", "acct", created)
	live.Status, live.CertSerial, live.Endpoint = "valid", "a1", "partners"
	gone.Status, gone.CertSerial = "valid", "b2"
	mustTx(t, s, func(tx store.Tx) error {
		for _, serial := range []string{"a1", "b2"} {
			c := testCert("int", serial)
			c.NotAfter = testStart.Add(-time.Hour)
			if serial == "a1" {
				c.NotAfter = testStart.Add(100 * 24 * time.Hour) // a long-lived certificate
			}
			if err := issue(tx, &c); err != nil {
				return err
			}
		}
		for _, o := range []store.ACMEOrder{live, gone, pending} {
			if err := tx.InsertACMEOrder(o); err != nil {
				return err
			}
		}
		return nil
	})
	if got, err := s.ACMECertOrder(ctx, "a1"); err != nil || got.ID != "o-live" || got.Endpoint != "partners" || got.AccountID != "acct" {
		t.Errorf("ACMECertOrder(a1) = %+v, %v; want o-live of acct on partners", got, err)
	}
	for _, serial := range []string{"", "ffff"} {
		if _, err := s.ACMECertOrder(ctx, serial); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("ACMECertOrder(%q) = %v, want ErrNotFound", serial, err)
		}
	}
	mustTx(t, s, func(tx store.Tx) error {
		if _, err := tx.ArchiveCertificates(testStart.Add(-time.Minute), testStart, 10); err != nil {
			return err
		}
		_, err := tx.PurgeExpired(store.ExpiredACMEOrders, testStart, 10)
		return err
	})
	if _, err := s.ACMECertOrder(ctx, "a1"); err != nil {
		t.Errorf("the order of a live certificate was purged: %v", err)
	}
	for _, id := range []string{"o-gone", "o-pending"} {
		if _, err := s.ACMEOrder(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("order %s (certificate archived, or none) kept: %v", id, err)
		}
	}
}

// testACMEOrderTransition: a guarded transition moves the order only from
// the version it read (status and update time); from another it is
// ErrStateChanged and changes nothing; a missing order is ErrNotFound.
func testACMEOrderTransition(t *testing.T, open Opener) {
	t.Parallel()
	s := openTest(t, open)
	ctx := context.Background()
	seedACMEAccounts(t, s, "acct")
	o := testACMEOrder("order-t", "acct", testStart)
	o.Status = "ready"
	mustTx(t, s, func(tx store.Tx) error { return tx.InsertACMEOrder(o) })
	processing := o
	processing.Status, processing.Updated = "processing", testStart.Add(time.Second)
	mustTx(t, s, func(tx store.Tx) error { return tx.TransitionACMEOrder(processing, o) })
	again := o
	again.Status, again.CertSerial = "valid", "ab"
	if err := s.WithTx(ctx, func(tx store.Tx) error { return tx.TransitionACMEOrder(again, o) }); !errors.Is(err, store.ErrStateChanged) {
		t.Errorf("transition from ready of a processing order = %v, want ErrStateChanged", err)
	}
	stale := processing
	stale.Updated = testStart // the right status, an older version
	if err := s.WithTx(ctx, func(tx store.Tx) error { return tx.TransitionACMEOrder(again, stale) }); !errors.Is(err, store.ErrStateChanged) {
		t.Errorf("transition from an older version = %v, want ErrStateChanged", err)
	}
	if got, err := s.ACMEOrder(ctx, o.ID); err != nil || got.Status != "processing" || got.CertSerial != "" {
		t.Errorf("after the refused transition: %+v, %v; want processing, no certificate", got, err)
	}
	missing := testACMEOrder("order-missing", "acct", testStart)
	if err := s.WithTx(ctx, func(tx store.Tx) error { return tx.TransitionACMEOrder(missing, missing) }); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("transition of a missing order = %v, want ErrNotFound", err)
	}
}

// testACMEAuthzChallengeTransition: guarded authorization and challenge
// transitions change only a row still in the status they move from.
func testACMEAuthzChallengeTransition(t *testing.T, open Opener) {
	t.Parallel()
	s := openTest(t, open)
	ctx := context.Background()
	seedACMEAccounts(t, s, "acct")
	az := testACMEAuthz("authz-t", "acct", store.ACMEIdentifier{Type: "dns", Value: "example.com"}, false, "pending",
		testStart.Add(time.Hour))
	mustTx(t, s, func(tx store.Tx) error { return tx.InsertACMEAuthz(az) })
	c := az.Challenges[0]
	c.Status = "processing"
	mustTx(t, s, func(tx store.Tx) error { return tx.TransitionACMEChallenge(c, "pending") })
	if err := s.WithTx(ctx, func(tx store.Tx) error { return tx.TransitionACMEChallenge(c, "pending") }); !errors.Is(err, store.ErrStateChanged) {
		t.Errorf("second start of a processing challenge = %v, want ErrStateChanged", err)
	}
	mustTx(t, s, func(tx store.Tx) error { return tx.TransitionACMEAuthz(az.ID, "deactivated", time.Time{}, "pending") })
	if err := s.WithTx(ctx, func(tx store.Tx) error { return tx.TransitionACMEAuthz(az.ID, "valid", time.Time{}, "pending") }); !errors.Is(err, store.ErrStateChanged) {
		t.Errorf("validating a deactivated authorization = %v, want ErrStateChanged", err)
	}
	if got, err := s.ACMEAuthz(ctx, az.ID); err != nil || got.Status != "deactivated" {
		t.Errorf("authorization %+v (%v), want deactivated", got, err)
	}
	if err := s.WithTx(ctx, func(tx store.Tx) error {
		return tx.TransitionACMEAuthz("authz-missing", "valid", time.Time{}, "pending")
	}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("transition of a missing authorization = %v, want ErrNotFound", err)
	}
	if err := s.WithTx(ctx, func(tx store.Tx) error {
		return tx.TransitionACMEChallenge(store.ACMEChallenge{ID: "chall-missing", Status: "valid"}, "processing")
	}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("transition of a missing challenge = %v, want ErrNotFound", err)
	}
}

// testACMEConcurrentTransitions races 32 transactions that each move one
// order from ready to processing (concurrent finalizes): the guard in the
// write lets exactly one win, and every other gets ErrStateChanged.
func testACMEConcurrentTransitions(t *testing.T, open Opener) {
	t.Parallel()
	const racers = 32
	s := openTest(t, open)
	ctx := context.Background()
	seedACMEAccounts(t, s, "acct")
	ready := testACMEOrder("order-race", "acct", testStart)
	ready.Status = "ready"
	mustTx(t, s, func(tx store.Tx) error { return tx.InsertACMEOrder(ready) })
	errs := make([]error, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() {
			processing := ready
			processing.Status, processing.Updated = "processing", testStart.Add(time.Duration(i+1)*time.Second)
			errs[i] = s.WithTx(ctx, func(tx store.Tx) error { return tx.TransitionACMEOrder(processing, ready) })
		})
	}
	wg.Wait()
	won := -1
	for i, err := range errs {
		switch {
		case err == nil && won >= 0:
			t.Errorf("racers %d and %d both moved the order", won, i)
		case err == nil:
			won = i
		case !errors.Is(err, store.ErrStateChanged):
			t.Errorf("racer %d: %v, want ErrStateChanged", i, err)
		}
	}
	if won < 0 {
		t.Fatal("no racer moved the order")
	}
	got, err := s.ACMEOrder(ctx, ready.ID)
	if want := testStart.Add(time.Duration(won+1) * time.Second); err != nil || got.Status != "processing" || !got.Updated.Equal(want) {
		t.Errorf("order after the race = %s at %v (%v); want processing at %v, the winner's", got.Status, got.Updated, err, want)
	}
}
