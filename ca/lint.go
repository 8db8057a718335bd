package ca

import (
	"fmt"
	"sort"
	"strings"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"
)

// Linter runs the zlint checks every certificate must pass before the real
// key signs it.
type Linter struct {
	registry lint.Registry
}

// gateSources are the RFC lints that refuse issuance on any error or warning.
// CA/Browser Forum lints do not apply to an internal CA's names.
func gateSources() lint.SourceList {
	return lint.SourceList{lint.RFC5280, lint.RFC3279, lint.RFC5480, lint.RFC5891, lint.RFC8813}
}

// NewLinter builds the filtered zlint registry once; it is safe for concurrent use.
func NewLinter() (*Linter, error) {
	reg, err := lint.GlobalRegistry().Filter(lint.FilterOptions{IncludeSources: gateSources()})
	if err != nil {
		return nil, fmt.Errorf("zlint registry: %w", err)
	}
	return &Linter{registry: reg}, nil
}

// Lint returns an error naming every failed lint of der.
func (l *Linter) Lint(der []byte) error {
	c, err := zx509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("lint: parse: %w", err)
	}
	rs := zlint.LintCertificateEx(c, l.registry)
	if !rs.ErrorsPresent && !rs.WarningsPresent && !rs.FatalsPresent {
		return nil
	}
	var failed []string
	for name, r := range rs.Results {
		if r.Status == lint.Error || r.Status == lint.Warn || r.Status == lint.Fatal {
			failed = append(failed, fmt.Sprintf("%s (%s)", name, r.Status))
		}
	}
	sort.Strings(failed)
	return fmt.Errorf("lint failed: %s", strings.Join(failed, ", "))
}
