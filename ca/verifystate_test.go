package ca

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/internal/testclock"
	"github.com/sigil-ca/sigil/store"
)

// stateSource is a fixed chain and set of records for VerifyState.
type stateSource struct {
	events  []audit.Event
	certs   []store.CertRecord
	blocked []store.BlockedKey
	tokens  []store.TokenRecord
	keys    []store.KeyRecord
}

func (s stateSource) ScanAudit(_ context.Context, fn func(audit.Event) error) error {
	for _, e := range s.events {
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

func (s stateSource) ScanAllCertificates(_ context.Context, fn func(store.CertRecord) error) error {
	for _, c := range s.certs {
		if err := fn(c); err != nil {
			return err
		}
	}
	return nil
}

func (s stateSource) BlockedKeys(context.Context) ([]store.BlockedKey, error) { return s.blocked, nil }
func (s stateSource) Tokens(context.Context) ([]store.TokenRecord, error)     { return s.tokens, nil }
func (s stateSource) Keys(context.Context) ([]store.KeyRecord, error)         { return s.keys, nil }

func TestVerifyStateOlderEvents(t *testing.T) {
	at := testclock.Start()
	der := []byte("certificate")
	issued := func(withDER bool) audit.Event {
		d := map[string]string{"issuer": "int", "profile": "tls-server"}
		if withDER {
			d[detailDERSHA256] = derDigest(der)
		}
		return audit.Event{Seq: 1, Time: at, Action: "cert.issued", Target: "01", Detail: d}
	}
	revoked := audit.Event{Seq: 2, Time: at.Add(time.Hour), Action: "cert.revoked", Target: "01",
		Detail: map[string]string{"issuer": "int", "reason": "keyCompromise"}}
	rec := store.CertRecord{IssuerID: "int", Serial: "01", DER: der, RevokedAt: at.Add(time.Hour), RevokeReason: ReasonKeyCompromise}
	unrevoked := rec
	unrevoked.RevokedAt, unrevoked.RevokeReason = time.Time{}, 0
	otherDER := rec
	otherDER.DER = []byte("another")

	tests := []struct {
		name       string
		src        stateSource
		wantErr    string
		wantDERChk int
	}{
		{"older event without a DER hash", stateSource{events: []audit.Event{issued(false), revoked}, certs: []store.CertRecord{otherDER}}, "", 0},
		{"event with a DER hash", stateSource{events: []audit.Event{issued(true), revoked}, certs: []store.CertRecord{rec}}, "", 1},
		{"DER changed", stateSource{events: []audit.Event{issued(true), revoked}, certs: []store.CertRecord{otherDER}}, "its DER is not the one", 1},
		{"un-revoked", stateSource{events: []audit.Event{issued(false), revoked}, certs: []store.CertRecord{unrevoked}}, "revoked (keyCompromise)", 0},
		{"inserted", stateSource{certs: []store.CertRecord{rec}}, "has no cert.issued event", 0},
		{"deleted", stateSource{events: []audit.Event{issued(false)}}, "missing from the database", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := VerifyState(context.Background(), tc.src)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("VerifyState: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("VerifyState: %v, want an error containing %q", err, tc.wantErr)
			}
			if rep.DERChecked != tc.wantDERChk {
				t.Errorf("DERChecked = %d, want %d", rep.DERChecked, tc.wantDERChk)
			}
		})
	}
}
