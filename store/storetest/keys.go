package storetest

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/store"
)

func testKEKRoundTrip(t *testing.T, open Opener) {
	t.Parallel()
	s := openTest(t, open)
	ctx := context.Background()
	if _, err := s.ActiveKEK(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ActiveKEK before init: %v, want ErrNotFound", err)
	}
	old := store.KEKRecord{ID: "kek-1", Backend: "passphrase", Params: []byte(`{"kdf":"argon2id"}`), Check: []byte{1, 2, 3},
		State: store.KeyActive, Created: testStart}
	newer := store.KEKRecord{ID: "kek-2", Backend: "kms", Params: []byte(`{"uri":"awskms:x"}`), Check: []byte{4},
		State: store.KeyActive, Created: testStart.Add(time.Hour)}
	mustTx(t, s, func(tx store.Tx) error {
		if err := tx.InsertKEK(old); err != nil {
			return err
		}
		return tx.InsertKEK(newer)
	})
	for _, want := range []store.KEKRecord{old, newer} {
		got, err := s.KEK(ctx, want.ID)
		if err != nil {
			t.Fatalf("KEK(%s): %v", want.ID, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("KEK(%s) = %+v, want %+v", want.ID, got, want)
		}
	}
	if got, err := s.ActiveKEK(ctx); err != nil || got.ID != "kek-2" {
		t.Errorf("ActiveKEK = %q, %v; want kek-2 (newest active)", got.ID, err)
	}
	mustTx(t, s, func(tx store.Tx) error { return tx.SetKEKState("kek-2", store.KeyRetired) })
	if got, err := s.ActiveKEK(ctx); err != nil || got.ID != "kek-1" {
		t.Errorf("ActiveKEK after retiring kek-2 = %q, %v; want kek-1", got.ID, err)
	}
	if got, _ := s.KEK(ctx, "kek-2"); got.State != store.KeyRetired {
		t.Errorf("kek-2 state = %q, want %q", got.State, store.KeyRetired)
	}
	err := s.WithTx(ctx, func(tx store.Tx) error { return tx.SetKEKState("kek-9", store.KeyRetired) })
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SetKEKState(missing) = %v, want ErrNotFound", err)
	}
}

func testKeyRoundTrip(t *testing.T, open Opener) {
	t.Parallel()
	s := openTest(t, open)
	ctx := context.Background()
	a := testKey("key-a")
	b := testKey("key-b")
	b.Created = testStart.Add(time.Minute)
	b.KEKID, b.WrappedDEK, b.Rotated, b.LastUsed = "", nil, time.Time{}, time.Time{} // a backend-held key
	var inTx []store.KeyRecord
	mustTx(t, s, func(tx store.Tx) error {
		if err := tx.InsertKey(b); err != nil {
			return err
		}
		if err := tx.InsertKey(a); err != nil {
			return err
		}
		var err error
		inTx, err = tx.Keys() // sees the transaction's own writes
		return err
	})
	want := []store.KeyRecord{a, b} // ordered by created
	if !reflect.DeepEqual(inTx, want) {
		t.Errorf("Tx.Keys = %+v, want %+v", inTx, want)
	}
	got, err := s.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Keys = %+v, want %+v", got, want)
	}
	for _, w := range want {
		if got, err := s.Key(ctx, w.ID); err != nil || !reflect.DeepEqual(got, w) {
			t.Errorf("Key(%s) = %+v, %v; want %+v", w.ID, got, err, w)
		}
	}

	t.Run("rewrap", func(t *testing.T) {
		rotated := testStart.Add(24 * time.Hour)
		mustTx(t, s, func(tx store.Tx) error { return tx.RewrapKey("key-a", "kek-2", []byte("dek2"), rotated) })
		got, err := s.Key(ctx, "key-a")
		if err != nil {
			t.Fatal(err)
		}
		want := a
		want.KEKID, want.WrappedDEK, want.Rotated = "kek-2", []byte("dek2"), rotated
		if !reflect.DeepEqual(got, want) {
			t.Errorf("after RewrapKey = %+v, want %+v (ciphertext untouched)", got, want)
		}
	})
	t.Run("touch", func(t *testing.T) {
		later := testStart.Add(48 * time.Hour)
		mustTx(t, s, func(tx store.Tx) error { return tx.TouchKey("key-a", later) })
		mustTx(t, s, func(tx store.Tx) error { return tx.TouchKey("key-a", testStart) }) // older: ignored
		if got, _ := s.Key(ctx, "key-a"); !got.LastUsed.Equal(later) {
			t.Errorf("LastUsed = %v, want %v (never moves back)", got.LastUsed, later)
		}
	})
	t.Run("rewrap missing or destroyed", func(t *testing.T) {
		d := testKey("key-destroyed")
		d.State, d.Destroyed = store.KeyDestroyed, testStart
		mustTx(t, s, func(tx store.Tx) error { return tx.InsertKey(d) })
		for _, id := range []string{"key-missing", "key-destroyed"} {
			err := s.WithTx(ctx, func(tx store.Tx) error { return tx.RewrapKey(id, "kek-2", []byte("x"), testStart) })
			if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("RewrapKey(%s) = %v, want ErrNotFound", id, err)
			}
		}
		if got, _ := s.Key(ctx, "key-destroyed"); !reflect.DeepEqual(got, d) {
			t.Errorf("destroyed key changed: %+v, want %+v", got, d)
		}
	})
}

func testKeyRetireDestroy(t *testing.T, open Opener) {
	t.Parallel()
	s := openTest(t, open)
	ctx := context.Background()
	k := testKey("key-ocsp")
	mustTx(t, s, func(tx store.Tx) error { return tx.InsertKey(k) })

	// Only a retired key is destroyed.
	if err := s.WithTx(ctx, func(tx store.Tx) error { return tx.DestroyKey("key-ocsp", testStart) }); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DestroyKey(active) = %v, want ErrNotFound", err)
	}
	retired := testStart.Add(time.Hour)
	mustTx(t, s, func(tx store.Tx) error { return tx.RetireKey("key-ocsp", retired) })
	want := k
	want.State, want.Rotated = store.KeyRetired, retired
	if got, _ := s.Key(ctx, "key-ocsp"); !reflect.DeepEqual(got, want) {
		t.Errorf("after RetireKey = %+v, want %+v", got, want)
	}
	if err := s.WithTx(ctx, func(tx store.Tx) error { return tx.RetireKey("key-ocsp", retired) }); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RetireKey(retired) = %v, want ErrNotFound", err)
	}

	destroyed := testStart.Add(2 * time.Hour)
	mustTx(t, s, func(tx store.Tx) error { return tx.DestroyKey("key-ocsp", destroyed) })
	want.State, want.Destroyed, want.WrappedDEK, want.Ciphertext = store.KeyDestroyed, destroyed, nil, nil
	if got, _ := s.Key(ctx, "key-ocsp"); !reflect.DeepEqual(got, want) {
		t.Errorf("after DestroyKey = %+v, want %+v (wrapped key and ciphertext erased, the rest kept)", got, want)
	}
	for name, fn := range map[string]func(store.Tx) error{
		"destroy again":  func(tx store.Tx) error { return tx.DestroyKey("key-ocsp", destroyed.Add(time.Hour)) },
		"retire":         func(tx store.Tx) error { return tx.RetireKey("key-ocsp", destroyed) },
		"destroy absent": func(tx store.Tx) error { return tx.DestroyKey("key-missing", destroyed) },
		"retire absent":  func(tx store.Tx) error { return tx.RetireKey("key-missing", destroyed) },
	} {
		if err := s.WithTx(ctx, fn); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", name, err)
		}
	}
	if got, _ := s.Key(ctx, "key-ocsp"); !reflect.DeepEqual(got, want) {
		t.Errorf("a destroyed key changed: %+v, want %+v", got, want)
	}
}

func testIssuerRoundTrip(t *testing.T, open Opener) {
	t.Parallel()
	s := openTest(t, open)
	ctx := context.Background()
	root := store.IssuerRecord{ID: "root", Kind: "root", KeyID: "key-root", CertDER: []byte{0x30, 1}, State: store.KeyActive, Created: testStart}
	inter := store.IssuerRecord{ID: "int", Kind: "intermediate", ParentID: "root", KeyID: "key-int", CertDER: []byte{0x30, 2},
		State: store.KeyRetired, Created: testStart.Add(time.Second)}
	mustTx(t, s, func(tx store.Tx) error {
		for _, k := range []string{"key-root", "key-int"} {
			if err := tx.InsertKey(testKey(k)); err != nil {
				return err
			}
		}
		if err := tx.InsertIssuer(inter); err != nil {
			return err
		}
		return tx.InsertIssuer(root)
	})
	for _, want := range []store.IssuerRecord{root, inter} {
		if got, err := s.Issuer(ctx, want.ID); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("Issuer(%s) = %+v, %v; want %+v", want.ID, got, err, want)
		}
	}
	got, err := s.Issuers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []store.IssuerRecord{root, inter}; !reflect.DeepEqual(got, want) {
		t.Errorf("Issuers = %+v, want %+v", got, want)
	}
}

func testTokenRoundTrip(t *testing.T, open Opener) {
	t.Parallel()
	s := openTest(t, open)
	ctx := context.Background()
	admin := store.TokenRecord{ID: "tok-admin", SecretHash: bytes.Repeat([]byte{7}, 32), Role: "admin", Profiles: []string{},
		Description: "bootstrap", Created: testStart}
	issuer := store.TokenRecord{ID: "tok-issuer", SecretHash: []byte{1, 2}, Role: "issuer", Profiles: []string{"server", "client"},
		Description: "web fleet", Created: testStart.Add(time.Second), Expires: testStart.Add(720 * time.Hour)}
	nilProfiles := store.TokenRecord{ID: "tok-auditor", SecretHash: []byte{3}, Role: "auditor", Created: testStart.Add(2 * time.Second)}
	mustTx(t, s, func(tx store.Tx) error {
		for _, tok := range []store.TokenRecord{issuer, admin, nilProfiles} {
			if err := tx.InsertToken(tok); err != nil {
				return err
			}
		}
		return nil
	})
	nilProfiles.Profiles = []string{} // nil is stored as "no profiles"
	want := []store.TokenRecord{admin, issuer, nilProfiles}
	for _, w := range want {
		if got, err := s.Token(ctx, w.ID); err != nil || !reflect.DeepEqual(got, w) {
			t.Errorf("Token(%s) = %+v, %v; want %+v", w.ID, got, err, w)
		}
	}
	if got, err := s.Tokens(ctx); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Tokens = %+v, %v; want %+v", got, err, want)
	}

	revoked := testStart.Add(time.Hour)
	mustTx(t, s, func(tx store.Tx) error { return tx.RevokeToken("tok-issuer", revoked) })
	if got, _ := s.Token(ctx, "tok-issuer"); !got.Revoked.Equal(revoked) {
		t.Errorf("Revoked = %v, want %v", got.Revoked, revoked)
	}
	for _, id := range []string{"tok-issuer", "tok-missing"} {
		err := s.WithTx(ctx, func(tx store.Tx) error { return tx.RevokeToken(id, revoked.Add(time.Hour)) })
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("RevokeToken(%s) = %v, want ErrNotFound", id, err)
		}
	}
	if got, _ := s.Token(ctx, "tok-issuer"); !got.Revoked.Equal(revoked) {
		t.Errorf("second revoke changed Revoked to %v, want %v", got.Revoked, revoked)
	}
}

func testSettingRoundTrip(t *testing.T, open Opener) {
	t.Parallel()
	tests := []struct {
		name   string
		values [][]byte // written in order; the last one is read back
		want   []byte
	}{
		{name: "value", values: [][]byte{[]byte("v1")}, want: []byte("v1")},
		{name: "overwrite", values: [][]byte{[]byte("v1"), []byte("v2")}, want: []byte("v2")},
		{name: "binary", values: [][]byte{{0, 0xff, 0}}, want: []byte{0, 0xff, 0}},
		{name: "empty", values: [][]byte{{}}, want: nil},
		{name: "nil", values: [][]byte{nil}, want: nil},
		{name: "overwrite with nil", values: [][]byte{[]byte("v1"), nil}, want: nil},
	}
	s := openTest(t, open)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, v := range tt.values {
				mustTx(t, s, func(tx store.Tx) error { return tx.PutSetting(tt.name, v) })
			}
			got, err := s.Setting(context.Background(), tt.name)
			if err != nil {
				t.Fatalf("Setting: %v", err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("Setting = %q, want %q", got, tt.want)
			}
		})
	}
}

func testTokenManagedScope(t *testing.T, open Opener) {
	s := openTest(t, open)
	ctx := context.Background()
	tok := store.TokenRecord{ID: "t1", SecretHash: []byte("h"), Role: "managed", Profiles: []string{}, Created: testStart, Managed: "web"}
	mustTx(t, s, func(tx store.Tx) error { return tx.InsertToken(tok) })
	got, err := s.Token(ctx, "t1")
	if err != nil || got.Managed != "web" || got.Role != "managed" {
		t.Errorf("token %+v, %v", got, err)
	}
}
