package ca

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/store"
)

// issuedDetailKeys is the one schema of cert.issued details (record.go).
var issuedDetailKeys = []string{"channel", detailDERSHA256, "issuer", "key", "not_after", "profile", "replaces", "sans", "subject"}

// TestOneIssuanceSchema: every path that issues (Init, Sign, the serving
// and OCSP responder certificates, an intermediate rotation) writes its
// certificate row with a cert.issued event of the same detail keys,
// whose hash is the row's DER, and the chain replays into the records.
func TestOneIssuanceSchema(t *testing.T) {
	tc := newTestCA(t, keystore.ECDSAP256, keystore.ECDSAP256)
	ctx := context.Background()
	csr := newCSR(t, mustKey(t, keystore.ECDSAP256), "", "web.example.com")
	if _, err := tc.Sign(ctx, SignRequest{CSR: csr, Profile: "tls-server", Requester: "token:t", Channel: ChannelAPI}); err != nil {
		t.Fatal(err)
	}
	if _, err := tc.NewServingCert(ctx, []string{"ca.test"}, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := tc.NewOCSPSigner(ctx, tc.Intermediate().ID, OCSPSignerConfig{Validity: 72 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := tc.Intermediates().RotateIntermediate(ctx, "token:admin", "test"); err != nil {
		t.Fatal(err)
	}
	recs := map[string]store.CertRecord{}
	if err := tc.st.ScanAllCertificates(ctx, func(r store.CertRecord) error {
		recs[r.Serial] = r
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	channels := map[string]bool{}
	var events int
	if err := tc.st.ScanAudit(ctx, func(e audit.Event) error {
		if e.Action != "cert.issued" {
			return nil
		}
		events++
		if got := slices.Sorted(maps.Keys(e.Detail)); !slices.Equal(got, issuedDetailKeys) {
			t.Errorf("cert.issued %s (channel %s): detail keys %v, want %v", e.Target, e.Detail["channel"], got, issuedDetailKeys)
		}
		rec, ok := recs[e.Target]
		if !ok {
			t.Errorf("cert.issued %s: no certificate row", e.Target)
			return nil
		}
		if e.Detail[detailDERSHA256] != derDigest(rec.DER) || e.Detail["issuer"] != rec.IssuerID ||
			e.Detail["sans"] != strings.Join(rec.SANs, ",") {
			t.Errorf("cert.issued %s: detail %v does not describe its row", e.Target, e.Detail)
		}
		channels[e.Detail["channel"]] = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if events != len(recs) {
		t.Errorf("%d cert.issued events for %d certificate rows", events, len(recs))
	}
	for _, ch := range []string{ChannelInit, ChannelAPI, ChannelInternal} {
		if !channels[ch] {
			t.Errorf("no cert.issued on channel %s (got %v)", ch, channels)
		}
	}
	if _, err := VerifyState(ctx, tc.st); err != nil {
		t.Errorf("VerifyState: %v", err)
	}
}
