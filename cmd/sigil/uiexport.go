package main

import (
	"context"
	"io"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/store"
)

// uiExport is the auditor web page's certificate export: the same bytes as
// GET /v1/certificates/export (api.WriteCertExport over the authority's
// scan), so that a CSV downloaded from the page and one from
// `sigil cert export` read alike.
type uiExport struct {
	auth *ca.Authority
}

// ExportCertificates implements ui.CertExporter. WriteCertExport writes
// nothing before the scan's first row, so a refused filter is still an
// error page.
func (e uiExport) ExportCertificates(ctx context.Context, w io.Writer, f store.CertFilter, format string) error {
	if f.Now.IsZero() {
		f.Now = e.auth.Now()
	}
	return api.WriteCertExport(w, format, func(fn func(store.CertRecord) error) error {
		return e.auth.ScanCertificates(ctx, f, fn)
	}, f.Now)
}
