package revocation

import (
	"encoding/asn1"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

type asnRaw = asn1.RawValue

func asnUnmarshal(b []byte, v any) ([]byte, error) { return asn1.Unmarshal(b, v) }

func seq(content []byte) []byte {
	der, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: content})
	if err != nil {
		panic(err)
	}
	return der
}

func counterValue(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
