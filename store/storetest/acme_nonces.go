package storetest

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

func testNonces(t *testing.T, open Opener) {
	t.Parallel()
	s := openTest(t, open)
	ctx := context.Background()
	now := testStart.Add(time.Hour)
	nonces := map[string]time.Time{
		"expired":      now.Add(-time.Minute),
		"expired-1ns":  now.Add(-time.Nanosecond),
		"expiring-now": now,
		"live":         now.Add(time.Minute),
	}
	for n, exp := range nonces {
		mustTx(t, s, func(tx store.Tx) error { return tx.UseNonce(n, exp) })
	}
	use := func(n string) error {
		return s.WithTx(ctx, func(tx store.Tx) error { return tx.UseNonce(n, now.Add(time.Minute)) })
	}
	for n := range nonces {
		if err := use(n); !errors.Is(err, store.ErrDuplicate) {
			t.Errorf("second UseNonce(%s) = %v, want ErrDuplicate", n, err)
		}
	}
	err := s.WithTx(ctx, func(tx store.Tx) error {
		if err := tx.UseNonce("twice-in-one-tx", now); err != nil {
			return err
		}
		return tx.UseNonce("twice-in-one-tx", now)
	})
	if !errors.Is(err, store.ErrDuplicate) {
		t.Errorf("UseNonce twice in one transaction = %v, want ErrDuplicate", err)
	}
	if err := use("twice-in-one-tx"); err != nil {
		t.Errorf("nonce of a refused transaction: %v, want it unspent", err)
	}

	var purged int64
	mustTx(t, s, func(tx store.Tx) error {
		var err error
		purged, err = tx.PurgeNonces(now)
		return err
	})
	if purged != 2 {
		t.Errorf("PurgeNonces = %d, want 2", purged)
	}
	for _, n := range []string{"expiring-now", "live", "twice-in-one-tx"} {
		if err := use(n); !errors.Is(err, store.ErrDuplicate) {
			t.Errorf("after purge UseNonce(%s) = %v, want ErrDuplicate (record kept)", n, err)
		}
	}
	for _, n := range []string{"expired", "expired-1ns"} {
		// The record is gone; callers refuse expired nonces before asking.
		if err := use(n); err != nil {
			t.Errorf("after purge UseNonce(%s) = %v, want the record gone", n, err)
		}
	}
	mustTx(t, s, func(tx store.Tx) error {
		var err error
		purged, err = tx.PurgeNonces(testStart)
		return err
	})
	if purged != 0 {
		t.Errorf("PurgeNonces with nothing expired = %d, want 0", purged)
	}
}

func testEABKey(t *testing.T, open Opener) {
	t.Parallel()
	s := openTest(t, open)
	ctx := context.Background()
	fresh := store.EABKey{ID: "kid-fresh", Endpoint: "partners", Requester: "team:web",
		Created: testStart}
	revoked := store.EABKey{ID: "kid-revoked", Requester: "team:old", Created: testStart,
		Revoked: testStart.Add(time.Hour)}
	spent := store.EABKey{ID: "kid-spent", Requester: "team:db", Created: testStart,
		Used: testStart.Add(time.Minute)}
	mustTx(t, s, func(tx store.Tx) error {
		for _, k := range []store.EABKey{fresh, revoked, spent} {
			if err := tx.InsertEABKey(k); err != nil {
				return err
			}
		}
		return nil
	})
	for _, want := range []store.EABKey{fresh, revoked, spent} {
		if got, err := s.EABKey(ctx, want.ID); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("EABKey(%s) = %+v, %v; want %+v", want.ID, got, err, want)
		}
	}

	used := testStart.Add(2 * time.Hour)
	mark := func(id string, at time.Time) error {
		return s.WithTx(ctx, func(tx store.Tx) error { return tx.MarkEABKeyUsed(id, at) })
	}
	if err := mark(fresh.ID, time.Time{}); err == nil || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrDuplicate) {
		t.Errorf("MarkEABKeyUsed(zero time) = %v, want a plain error", err)
	}
	if err := mark(fresh.ID, used); err != nil {
		t.Fatalf("MarkEABKeyUsed: %v", err)
	}
	want := fresh
	want.Used = used
	if got, _ := s.EABKey(ctx, fresh.ID); !reflect.DeepEqual(got, want) {
		t.Errorf("after use = %+v, want %+v", got, want)
	}
	tests := []struct {
		id   string
		want error
	}{
		{fresh.ID, store.ErrDuplicate},
		{spent.ID, store.ErrDuplicate},
		{revoked.ID, store.ErrNotFound},
		{"kid-missing", store.ErrNotFound},
	}
	for _, tt := range tests {
		if err := mark(tt.id, used.Add(time.Hour)); !errors.Is(err, tt.want) {
			t.Errorf("MarkEABKeyUsed(%s) = %v, want %v", tt.id, err, tt.want)
		}
	}
	if got, _ := s.EABKey(ctx, fresh.ID); !reflect.DeepEqual(got, want) {
		t.Errorf("refused second use changed the key: %+v, want %+v", got, want)
	}
}

func testACMENotFound(t *testing.T, open Opener) {
	t.Parallel()
	s := openTest(t, open)
	seedACMEAccounts(t, s, "acct")
	ctx := context.Background()
	tests := []struct {
		name string
		get  func() error
	}{
		{"account", func() error { _, err := s.ACMEAccount(ctx, "nope"); return err }},
		{"account by key", func() error { _, err := s.ACMEAccountByKey(ctx, "", "nope"); return err }},
		{"order", func() error { _, err := s.ACMEOrder(ctx, "nope"); return err }},
		{"authz", func() error { _, err := s.ACMEAuthz(ctx, "nope"); return err }},
		{"challenge", func() error { _, err := s.ACMEChallenge(ctx, "nope"); return err }},
		{"reusable authz", func() error {
			_, err := s.ACMEReusableAuthz(ctx, "acct", store.ACMEIdentifier{Type: "dns", Value: "x"}, false, testStart)
			return err
		}},
		{"eab key", func() error { _, err := s.EABKey(ctx, "nope"); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := tt.get(); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("err = %v, want ErrNotFound", err)
			}
		})
	}
}

func testACMEDuplicate(t *testing.T, open Opener) {
	t.Parallel()
	name := store.ACMEIdentifier{Type: "dns", Value: "example.com"}
	tests := []struct {
		name          string
		first, second func(store.Tx) error
	}{
		{
			name:  "account id",
			first: func(tx store.Tx) error { return tx.InsertACMEAccount(testACMEAccount("acct-1", "")) },
			second: func(tx store.Tx) error {
				a := testACMEAccount("acct-1", "other")
				a.KeyThumbprint, a.EABKeyID = "thumb-other", ""
				return tx.InsertACMEAccount(a)
			},
		},
		{
			name:  "account key on one endpoint",
			first: func(tx store.Tx) error { return tx.InsertACMEAccount(testACMEAccount("acct-1", "")) },
			second: func(tx store.Tx) error {
				a := testACMEAccount("acct-2", "")
				a.KeyThumbprint, a.EABKeyID = "thumb-acct-1", ""
				return tx.InsertACMEAccount(a)
			},
		},
		{
			name:  "eab key binds one account",
			first: func(tx store.Tx) error { return tx.InsertACMEAccount(testACMEAccount("acct-1", "")) },
			second: func(tx store.Tx) error {
				a := testACMEAccount("acct-2", "")
				a.EABKeyID = "eab-acct-1"
				return tx.InsertACMEAccount(a)
			},
		},
		{
			name:  "order id",
			first: func(tx store.Tx) error { return tx.InsertACMEOrder(testACMEOrder("o", "acct", testStart)) },
			second: func(tx store.Tx) error {
				return tx.InsertACMEOrder(testACMEOrder("o", "acct", testStart.Add(time.Hour)))
			},
		},
		{
			name: "authz id",
			first: func(tx store.Tx) error {
				return tx.InsertACMEAuthz(store.ACMEAuthz{ID: "z", AccountID: "acct", Identifier: name})
			},
			second: func(tx store.Tx) error {
				return tx.InsertACMEAuthz(store.ACMEAuthz{ID: "z", AccountID: "acct", Identifier: name})
			},
		},
		{
			name: "challenge id",
			first: func(tx store.Tx) error {
				return tx.InsertACMEAuthz(testACMEAuthz("z1", "acct", name, false, "pending", testStart))
			},
			second: func(tx store.Tx) error {
				a := testACMEAuthz("z2", "acct", name, false, "pending", testStart)
				a.Challenges[1].ID = "z1-dns-01"
				return tx.InsertACMEAuthz(a)
			},
		},
		{
			name:   "nonce",
			first:  func(tx store.Tx) error { return tx.UseNonce("n", testStart) },
			second: func(tx store.Tx) error { return tx.UseNonce("n", testStart.Add(time.Hour)) },
		},
		{
			name:   "eab key id",
			first:  func(tx store.Tx) error { return tx.InsertEABKey(store.EABKey{ID: "k"}) },
			second: func(tx store.Tx) error { return tx.InsertEABKey(store.EABKey{ID: "k"}) },
		},
		{
			name: "eab key used twice",
			first: func(tx store.Tx) error {
				if err := tx.InsertEABKey(store.EABKey{ID: "k"}); err != nil {
					return err
				}
				return tx.MarkEABKeyUsed("k", testStart)
			},
			second: func(tx store.Tx) error { return tx.MarkEABKeyUsed("k", testStart.Add(time.Hour)) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := openTest(t, open)
			seedACMEAccounts(t, s, "acct")
			mustTx(t, s, tt.first)
			err := s.WithTx(context.Background(), func(tx store.Tx) error {
				if _, err := tx.AppendAudit(audit.Event{Time: testStart, Actor: "acme:acct", Action: "dup.attempt"}); err != nil {
					return err
				}
				return tt.second(tx)
			})
			if !errors.Is(err, store.ErrDuplicate) {
				t.Fatalf("second = %v, want ErrDuplicate", err)
			}
			// The refused transaction left nothing behind, not even its audit event.
			if events := checkChain(t, s, nil); len(events) != 0 {
				t.Errorf("%d audit events after refused transaction, want 0", len(events))
			}
		})
	}
}
