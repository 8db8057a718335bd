package main

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/mail"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/api/client"
	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/internal/atomicfile"
)

func certCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "cert", Short: "Issue, show, list and revoke certificates"}
	cmd.AddCommand(certIssueCmd(), certShowCmd(), certListCmd(), certSummaryCmd(), certExportCmd(), certRevokeCmd(), certUnholdCmd())
	return cmd
}

func certIssueCmd() *cobra.Command {
	var cf clientFlags
	var csrFile, profile, out, keyOut, keyType, validity, cn string
	var sans []string
	cmd := &cobra.Command{
		Use:   "issue (--csr FILE | --san NAME... --key-out FILE) --profile P",
		Short: "Issue a certificate from a CSR, or generate a key locally and issue for it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var csrPEM, keyDER []byte
			switch {
			case csrFile != "" && len(sans) > 0:
				return fmt.Errorf("use either --csr or --san, not both")
			case csrFile != "":
				b, err := os.ReadFile(csrFile)
				if err != nil {
					return fmt.Errorf("--csr: %w", err)
				}
				csrPEM = b
			case len(sans) > 0:
				if keyOut == "" {
					return fmt.Errorf("--san needs --key-out: the key is generated here and never sent")
				}
				if _, err := os.Stat(keyOut); err == nil {
					return fmt.Errorf("--key-out %s exists; refusing to overwrite a key", keyOut)
				}
				alg, err := keystore.ParseAlgorithm(keyType)
				if err != nil {
					return fmt.Errorf("--key-type: %w", err)
				}
				key, err := keystore.Generate(alg)
				if err != nil {
					return err
				}
				if csrPEM, err = buildCSR(key, cn, sans); err != nil {
					return err
				}
				if keyDER, err = x509.MarshalPKCS8PrivateKey(key); err != nil {
					return err
				}
				defer clear(keyDER)
			default:
				return fmt.Errorf("give --csr FILE, or --san NAME with --key-out FILE")
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			resp, err := c.Sign(cmd.Context(), api.SignRequest{CSR: string(csrPEM), Profile: profile, Validity: validity})
			if err != nil {
				return err
			}
			// A generated key is written only once the server has issued for it.
			if keyDER != nil {
				if err := atomicfile.WriteFile(keyOut, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
					return err
				}
			}
			return writeChain(cmd, out, resp)
		},
	}
	cf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&csrFile, "csr", "", "PEM CSR to sign")
	f.StringSliceVar(&sans, "san", nil, "subject alternative name (DNS name, IP, email or URI); repeatable")
	f.StringVar(&cn, "cn", "", "common name for a generated CSR (default: the first --san)")
	f.StringVar(&keyOut, "key-out", "", "where to write the generated private key (mode 0600)")
	f.StringVar(&keyType, "key-type", "ecdsa-p256", "generated key type: ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072, rsa-4096, ed25519")
	f.StringVar(&profile, "profile", "", "issuance profile (required)")
	f.StringVar(&validity, "validity", "", "requested validity, e.g. 720h (default: the profile's)")
	f.StringVar(&out, "out", "", "write the chain (leaf, then intermediates) here instead of stdout")
	_ = cmd.MarkFlagRequired("profile")
	return cmd
}

func writeChain(cmd *cobra.Command, out string, resp api.SignResponse) error {
	if out == "" {
		_, err := fmt.Fprint(cmd.OutOrStdout(), resp.Chain)
		return err
	}
	if err := atomicfile.WriteFile(out, []byte(resp.Chain), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "issued serial %s (profile %s, expires %s) -> %s\n", resp.Serial, resp.Profile, fmtTime(resp.NotAfter), out)
	return nil
}

// buildCSR makes a CSR whose names are sorted into their SAN types.
func buildCSR(key any, cn string, sans []string) ([]byte, error) {
	tmpl := &x509.CertificateRequest{}
	for _, s := range sans {
		switch {
		case net.ParseIP(s) != nil:
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(s))
		case strings.Contains(s, "://"):
			u, err := url.Parse(s)
			if err != nil {
				return nil, fmt.Errorf("--san %q: %w", s, err)
			}
			tmpl.URIs = append(tmpl.URIs, u)
		case strings.Contains(s, "@"):
			if _, err := mail.ParseAddress(s); err != nil {
				return nil, fmt.Errorf("--san %q: %w", s, err)
			}
			tmpl.EmailAddresses = append(tmpl.EmailAddresses, s)
		default:
			tmpl.DNSNames = append(tmpl.DNSNames, s)
		}
	}
	if cn == "" && len(sans) > 0 && len(sans[0]) <= 64 {
		cn = sans[0]
	}
	tmpl.Subject = pkix.Name{CommonName: cn}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("create CSR: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

func certShowCmd() *cobra.Command {
	var cf clientFlags
	var format string
	var pemOnly bool
	cmd := &cobra.Command{
		Use:   "show SERIAL",
		Short: "Show one certificate's record",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			cert, err := c.Certificate(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if pemOnly {
				_, err := fmt.Fprint(w, cert.PEM)
				return err
			}
			return printCert(w, format, cert)
		},
	}
	cf.register(cmd)
	addFormatFlag(cmd, &format)
	cmd.Flags().BoolVar(&pemOnly, "pem", false, "print only the certificate PEM")
	return cmd
}

// printCert writes one certificate's record as "field: value" lines, CSV
// or JSON.
func printCert(w io.Writer, format string, cert api.Certificate) error {
	if format == "json" {
		return render(w, "json", table{}, cert)
	}
	rows := [][]string{
		{"serial", cert.Serial}, {"status", cert.Status}, {"subject", cert.Subject},
		{"sans", strings.Join(cert.SANs, ", ")}, {"issuer", cert.Issuer},
		{"not before", fmtTime(cert.NotBefore)}, {"not after", fmtTime(cert.NotAfter)},
		{"key", cert.KeyAlgorithm}, {"profile", cert.Profile}, {"requester", cert.Requester},
		{"channel", cert.Channel}, {"issued", fmtTime(cert.Issued)},
	}
	if cert.Replaces != "" {
		rows = append(rows, []string{"replaces", cert.Replaces})
	}
	if !cert.RevokedAt.IsZero() {
		rows = append(rows, []string{"revoked", fmtTime(cert.RevokedAt)}, []string{"reason", cert.RevocationReason})
		if !cert.InvalidityDate.IsZero() {
			rows = append(rows, []string{"invalidity date", fmtTime(cert.InvalidityDate)})
		}
	}
	if format == "csv" {
		return render(w, "csv", table{header: []string{"field", "value"}, rows: rows}, nil)
	}
	width := 0
	for _, r := range rows {
		width = max(width, len(r[0])+1)
	}
	for _, r := range rows {
		fmt.Fprintf(w, "%-*s %s\n", width, r[0]+":", r[1])
	}
	return nil
}

func certRevokeCmd() *cobra.Command {
	var cf clientFlags
	var format, reason, invalidity string
	var bulk bulkRevokeFilter
	cmd := &cobra.Command{
		Use:   "revoke (SERIAL | --issued-by-key KEYID | --requester R | --issued-between A,B) --reason R [--invalidity-date T] [--dry-run]",
		Short: "Revoke a certificate, or every valid one matching a filter; only --reason certificateHold can be undone (cert unhold)",
		Long: `Revoke one certificate by serial, or in bulk every valid (unexpired, unrevoked)
certificate that matches all the filters given: --issued-by-key KEYID (the CA
key that signed them, from "sigil keys list"), --requester R, and
--issued-between A,B (RFC 3339 times). The server revokes them in one
operation, audited as a whole and each revocation on its own; --dry-run only
counts.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			code, err := ca.ParseRevocationReason(reason)
			if err != nil {
				return fmt.Errorf("--reason: %s", detail(err))
			}
			if invalidity != "" {
				if _, err := time.Parse(time.RFC3339, invalidity); err != nil {
					return fmt.Errorf("--invalidity-date %q: want an RFC 3339 time such as 2026-01-02T15:04:05Z", invalidity)
				}
			}
			switch {
			case len(args) == 1 && !bulk.empty():
				return errors.New("give a SERIAL or bulk filters, not both")
			case len(args) == 0 && bulk.empty():
				return errors.New("give a SERIAL, or --issued-by-key, --requester or --issued-between for a bulk revocation")
			case len(args) == 0:
				c, err := cf.connect(format)
				if err != nil {
					return err
				}
				return bulkRevoke(cmd, c, bulk, code, invalidity)
			case bulk.dryRun:
				return errors.New("--dry-run applies to bulk revocation only")
			}
			req := api.RevokeRequest{Serial: args[0], Reason: json.RawMessage(strconv.Itoa(code)), InvalidityDate: invalidity}
			c, err := cf.connect(format)
			if err != nil {
				return err
			}
			cert, err := c.Revoke(cmd.Context(), req)
			if err != nil {
				return err
			}
			return printCert(cmd.OutOrStdout(), format, cert)
		},
	}
	cf.register(cmd)
	addFormatFlag(cmd, &format)
	f := cmd.Flags()
	f.StringVar(&reason, "reason", "", "RFC 5280 reason (required): unspecified, keyCompromise, cACompromise, affiliationChanged, "+
		"superseded, cessationOfOperation, certificateHold, privilegeWithdrawn, aACompromise, or its code")
	f.StringVar(&invalidity, "invalidity-date", "", "when the key was known or suspected to be compromised (RFC 3339)")
	f.StringVar(&bulk.issuerKey, "issued-by-key", "", "bulk: certificates signed by this CA key id")
	f.StringVar(&bulk.requester, "requester", "", "bulk: certificates of this requester, e.g. token:ID or acme:ID")
	f.StringSliceVar(&bulk.between, "issued-between", nil, "bulk: issued between A and B, as A,B (RFC 3339)")
	f.BoolVar(&bulk.dryRun, "dry-run", false, "bulk: count what would be revoked, revoke nothing")
	_ = cmd.MarkFlagRequired("reason")
	return cmd
}

// bulkRevokeFilter selects certificates for a bulk revocation.
type bulkRevokeFilter struct {
	issuerKey, requester string
	between              []string
	dryRun               bool
}

func (f bulkRevokeFilter) empty() bool {
	return f.issuerKey == "" && f.requester == "" && len(f.between) == 0
}

// bulkRevoke asks the server to revoke every valid certificate matching f
// (POST /v1/certificates/revoke): one audited operation, whose answer
// counts those revoked, those revoked meanwhile by someone else (not
// failures) and those that failed.
func bulkRevoke(cmd *cobra.Command, c *client.Client, f bulkRevokeFilter, reason int, invalidity string) error {
	req := api.BulkRevokeRequest{Filter: api.BulkRevokeFilter{IssuerKey: f.issuerKey, Requester: f.requester},
		Reason: json.RawMessage(strconv.Itoa(reason)), InvalidityDate: invalidity, DryRun: f.dryRun}
	if len(f.between) > 0 {
		if len(f.between) != 2 {
			return errors.New("--issued-between wants two RFC 3339 times, as A,B")
		}
		for _, v := range f.between {
			if _, err := time.Parse(time.RFC3339, v); err != nil {
				return fmt.Errorf("--issued-between %q: want an RFC 3339 time", v)
			}
		}
		req.Filter.IssuedAfter, req.Filter.IssuedBefore = f.between[0], f.between[1]
	}
	res, err := c.BulkRevoke(cmd.Context(), req)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if res.DryRun {
		fmt.Fprintf(out, "%d certificate(s) would be revoked (dry run)\n", res.Matched)
		return nil
	}
	fmt.Fprintf(out, "revoked %d certificate(s); %d already revoked; %d failed\n", res.Revoked, res.AlreadyRevoked, res.Failed)
	if res.Failed > 0 {
		first := "?"
		if len(res.Failures) > 0 {
			first = res.Failures[0].Serial + ": " + res.Failures[0].Detail
		}
		return fmt.Errorf("%d revocation(s) failed; first: %s", res.Failed, first)
	}
	return nil
}

func certUnholdCmd() *cobra.Command {
	var cf clientFlags
	var format string
	cmd := &cobra.Command{
		Use:   "unhold SERIAL",
		Short: "Release a certificate revoked with reason certificateHold: it is valid again",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.connect(format)
			if err != nil {
				return err
			}
			cert, err := c.Unhold(cmd.Context(), api.UnholdRequest{Serial: args[0]})
			if err != nil {
				return err
			}
			return printCert(cmd.OutOrStdout(), format, cert)
		},
	}
	cf.register(cmd)
	addFormatFlag(cmd, &format)
	return cmd
}

// detail is what an error says to the operator: a *ca.Error's detail
// without its kind prefix.
func detail(err error) string {
	var e *ca.Error
	if errors.As(err, &e) {
		return e.Detail
	}
	return err.Error()
}

func certListCmd() *cobra.Command {
	var filters certFilterFlags
	var cursor string
	var limit int
	var all bool
	cmd := listCmd(&cobra.Command{
		Use:   "list [filters]",
		Short: "List certificates, newest first unless --sort says otherwise",
		Long: `List the certificates that match every filter given (see "Querying the
history" in the README). Pages follow --sort; --all fetches every page, or
pass the printed --cursor to continue.`,
		Args: cobra.NoArgs,
	}, listSpec[api.CertificateList, api.Certificate]{
		fetch: func(ctx context.Context, c *client.Client, _ []string) (api.CertificateList, error) {
			params := filters.params()
			params["cursor"] = cursor
			certs, next, err := fetchList(ctx, c.Certificates, params,
				limit, all, func(p api.CertificateList) ([]api.Certificate, string) { return p.Certificates, p.NextCursor })
			return api.CertificateList{Certificates: certs, NextCursor: next}, err
		},
		items: func(l api.CertificateList) []api.Certificate { return l.Certificates },
		next:  func(l api.CertificateList) string { return l.NextCursor },
		cols: []column[api.Certificate]{
			{"SERIAL", func(c api.Certificate) string { return c.Serial }},
			{"SUBJECT", func(c api.Certificate) string { return c.Subject }},
			{"SANS", func(c api.Certificate) string { return strings.Join(c.SANs, ",") }},
			{"PROFILE", func(c api.Certificate) string { return c.Profile }},
			{"STATUS", func(c api.Certificate) string { return c.Status }},
			{"ISSUED", func(c api.Certificate) string { return fmtTime(c.Issued) }},
			{"NOT AFTER", func(c api.Certificate) string { return fmtTime(c.NotAfter) }},
			{"REQUESTER", func(c api.Certificate) string { return c.Requester }},
		},
	})
	filters.register(cmd)
	f := cmd.Flags()
	f.StringVar(&cursor, "cursor", "", "continue from a previous page")
	f.IntVar(&limit, "limit", 100, "page size (1-1000)")
	f.BoolVar(&all, "all", false, "fetch every page")
	return cmd
}

func certSummaryCmd() *cobra.Command {
	var cf clientFlags
	var filters certFilterFlags
	var format, by string
	cmd := &cobra.Command{
		Use:   "summary --by profile|requester|issuer|channel|day|status [filters]",
		Short: "Count certificates by profile, requester, issuer, channel, issuance day or status",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if filters.sort != "" {
				return errors.New("--sort does not apply to a summary")
			}
			c, err := cf.connect(format)
			if err != nil {
				return err
			}
			q := filters.query()
			q.Set("by", by)
			out, err := c.CertificateSummary(cmd.Context(), q)
			if err != nil {
				return err
			}
			t := table{header: []string{strings.ToUpper(by), "COUNT"}}
			for _, g := range out.Groups {
				t.rows = append(t.rows, []string{g.Key, strconv.FormatInt(g.Count, 10)})
			}
			if format == "table" {
				t.rows = append(t.rows, []string{"total", strconv.FormatInt(out.Total, 10)})
			}
			return render(cmd.OutOrStdout(), format, t, out)
		},
	}
	cf.register(cmd)
	addFormatFlag(cmd, &format)
	filters.register(cmd)
	cmd.Flags().StringVar(&by, "by", "", "group by profile, requester, issuer, channel, day (UTC) or status")
	_ = cmd.MarkFlagRequired("by")
	return cmd
}
