package ca

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"testing"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/store"
)

// BenchmarkAuditExport streams a 20,000-event audit log from SQLite as a
// verifiable NDJSON export (PrepareAuditExport signs a checkpoint of the
// head, then pages through the store) and reports events/s; the verify
// sub-benchmark reports the offline verification rate of that export.
func BenchmarkAuditExport(b *testing.B) {
	const n = 20_000
	tc := newTestCA(b, keystore.ECDSAP256, keystore.ECDSAP256)
	ctx := context.Background()
	for i := 0; i < n; i += 1000 {
		err := tc.st.WithTx(ctx, func(tx store.Tx) error {
			for j := range 1000 {
				_, err := tx.AppendAudit(audit.Event{Time: tc.clk.Now(), Actor: "bench", Action: "cert.issued",
					Target: fmt.Sprintf("%032x", i+j), Detail: map[string]string{"profile": "tls-server", "channel": "api"}})
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	var export bytes.Buffer
	b.Run("export", func(b *testing.B) {
		var events int64
		for b.Loop() {
			x, err := tc.PrepareAuditExport(ctx, tc.clk.Now().AddDate(-1, 0, 0))
			if err != nil {
				b.Fatal(err)
			}
			export.Reset()
			if err := x.WriteNDJSON(ctx, &export, nil); err != nil {
				b.Fatal(err)
			}
			events += x.Header.Events
		}
		b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(float64(export.Len())/float64(max(events/int64(b.N), 1)), "bytes/event")
	})
	roots := x509.NewCertPool()
	roots.AddCert(tc.init.Root)
	b.Run("verify", func(b *testing.B) {
		var events int64
		for b.Loop() {
			sum, err := audit.VerifyExport(bytes.NewReader(export.Bytes()), roots)
			if err != nil {
				b.Fatal(err)
			}
			events += sum.Events
		}
		b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
	})
}
