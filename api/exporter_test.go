package api_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/store"
)

// TestExporterMatchesHTTPExport: the export the auditor web page serves
// (api.Exporter) is byte for byte GET /v1/certificates/export's, in both
// formats, with and without a filter; a bad format writes nothing.
func TestExporterMatchesHTTPExport(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, n := range []string{"a.example.com", "b.example.com", "c.example.org"} {
		e.sign(t, e.admin, "tls-server", n)
	}
	ex := api.NewExporter(e.auth)
	for _, c := range []struct {
		name, query string
		f           store.CertFilter
	}{
		{"all", "", store.CertFilter{}},
		{"by name", "name=example.com", store.CertFilter{Name: "example.com"}},
	} {
		for _, format := range []string{"csv", "ndjson"} {
			t.Run(c.name+" "+format, func(t *testing.T) {
				q := "format=" + format
				if c.query != "" {
					q += "&" + c.query
				}
				_, want := e.export(t, e.admin, q)
				var got bytes.Buffer
				if err := ex.ExportCertificates(context.Background(), &got, c.f, format); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got.Bytes(), want) {
					t.Errorf("Exporter wrote\n%s\nGET /v1/certificates/export answered\n%s", got.Bytes(), want)
				}
			})
		}
	}
	var out bytes.Buffer
	if err := ex.ExportCertificates(context.Background(), &out, store.CertFilter{}, "xml"); err == nil || out.Len() != 0 {
		t.Errorf("format xml: %v, wrote %d bytes; want an error and nothing written", err, out.Len())
	}
}
