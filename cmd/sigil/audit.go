package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/api/client"
	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/ca/audit/witness"
)

func auditCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Verify and query the audit log"}
	cmd.AddCommand(auditVerifyCmd(), auditListCmd(), auditExportCmd(), auditSTHCmd(), auditProveCmd(), auditConsistencyCmd())
	return cmd
}

func auditVerifyCmd() *cobra.Command {
	var dbPath, storeURL, caFile, exportPath, witnessDir string
	cmd := &cobra.Command{
		Use:   "verify (--db FILE | --store postgres://...) [--ca-file root.pem] [--witness DIR] | --export FILE --ca-file root.pem)",
		Short: "Verify the audit chain and the transparency log offline",
		Long: `With --db, reads the database without changing it and checks that no audit
event was altered, deleted, reordered or cut off, and that the transparency log
of issued certificates recomputes, from the certificate records, to every signed
tree head. With --ca-file, the audit signing key must be certified by that root,
so a rewritten database cannot bring its own key. Then it replays the chain
and compares the records with it: each certificate's DER, revocation status,
reason and time; the blocked-key list; tokens and keys. A record changed
outside the CA (a SQL edit) is named.

With --store postgres://user@host/db (password: SIGIL_STORE_PASSWORD or the
DSN's passfile), checks a PostgreSQL store the same way; it only reads.

With --witness DIR (the audit.witness.dir of the server), the checkpoints
and tree heads published there are checked as well: a database behind what
was witnessed had events cut from its tail, even if the checkpoints after
the cut were deleted with them.

With --export, checks a file written by "sigil audit export" (ndjson) against
the root in --ca-file, with no server and no database: every event hash and
link, every checkpoint signature and its signer's certificate, and that the
last event is covered by a signed checkpoint.

Exit status 0 means everything verifies; 1 names the first broken event or log
leaf (for an export, its line and event).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case exportPath != "" && (dbPath != "" || storeURL != ""), dbPath != "" && storeURL != "":
				return fmt.Errorf("--db, --store and --export exclude each other")
			case exportPath != "" && witnessDir != "":
				return fmt.Errorf("--witness goes with --db")
			case exportPath != "":
				return verifyExportFile(cmd, exportPath, caFile)
			case dbPath == "" && storeURL == "":
				return fmt.Errorf("--db, --store or --export is required")
			}
			if dbPath != "" {
				if _, err := os.Stat(dbPath); err != nil {
					return fmt.Errorf("--db: %w", err)
				}
			}
			var root *x509.Certificate
			if caFile != "" {
				c, err := readCertFile(caFile)
				if err != nil {
					return fmt.Errorf("--ca-file: %w", err)
				}
				root = c
			}
			var wcps []audit.Checkpoint
			var wheads []audit.TreeHead
			if witnessDir != "" {
				var err error
				if wcps, wheads, err = witness.ReadDir(witnessDir); err != nil {
					return err
				}
			}
			st, err := openVerified(cmd.Context(), dbPath, storeURL)
			if err != nil {
				return err
			}
			defer st.Close()
			rep, err := ca.VerifyAuditWitnessed(cmd.Context(), st, root, wcps)
			if err != nil {
				return fmt.Errorf("audit verification FAILED: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "audit chain OK: %d events, %d signed checkpoints, head %d %x\n",
				rep.Events, rep.Checkpoints, rep.Head.Seq, rep.Head.Hash)
			if !rep.KeysCertified {
				fmt.Fprintln(cmd.ErrOrStderr(), "note: checkpoint keys were taken from the database; pass --ca-file root.pem to check them against the root")
			}
			srep, err := ca.VerifyState(cmd.Context(), st)
			var se *ca.StateError
			if errors.As(err, &se) {
				for _, m := range se.Mismatches {
					fmt.Fprintln(cmd.ErrOrStderr(), "state mismatch:", m)
				}
			}
			if err != nil {
				return fmt.Errorf("state verification FAILED: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "state OK: %d certificates (%d DER hashes from the chain), %d blocked keys, %d tokens, %d keys match the audit chain\n",
				srep.Certificates, srep.DERChecked, srep.BlockedKeys, srep.Tokens, srep.Keys)
			lrep, err := ca.VerifyLogWitnessed(cmd.Context(), st, root, wheads)
			if err != nil {
				return fmt.Errorf("transparency log verification FAILED: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "transparency log OK: %d leaves, %d signed tree heads, root %x\n",
				lrep.Leaves, lrep.Heads, lrep.Root)
			if witnessDir != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "witness OK: %d checkpoints, %d tree heads in %s, none beyond the database\n",
					len(wcps), len(wheads), witnessDir)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dbPath, "db", "", "database file to verify")
	cmd.Flags().StringVar(&storeURL, "store", "", "PostgreSQL store to verify: postgres://user@host:port/db")
	cmd.Flags().StringVar(&caFile, "ca-file", "", "root certificate that must certify the audit signing key")
	cmd.Flags().StringVar(&exportPath, "export", "", `audit export (from "sigil audit export") to verify offline`)
	cmd.Flags().StringVar(&witnessDir, "witness", "", "witness directory (audit.witness.dir) whose checkpoints the database must reach")
	return cmd
}

func readCertFile(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return x509.ParseCertificate(block.Bytes)
}

func auditListCmd() *cobra.Command {
	var since, until, action, actor, target, cursor string
	var limit int
	var all bool
	cmd := listCmd(&cobra.Command{
		Use:   "list",
		Short: "List audit events, oldest first",
		Args:  cobra.NoArgs,
	}, listSpec[api.AuditList, api.AuditEvent]{
		fetch: func(ctx context.Context, c *client.Client, _ []string) (api.AuditList, error) {
			events, next, err := fetchList(ctx, c.Audit,
				map[string]string{"after": since, "before": until, "action": action, "actor": actor, "target": target, "cursor": cursor},
				limit, all, func(p api.AuditList) ([]api.AuditEvent, string) { return p.Events, p.NextCursor })
			return api.AuditList{Events: events, NextCursor: next}, err
		},
		items: func(l api.AuditList) []api.AuditEvent { return l.Events },
		next:  func(l api.AuditList) string { return l.NextCursor },
		cols: []column[api.AuditEvent]{
			{"SEQ", func(e api.AuditEvent) string { return strconv.FormatInt(e.Seq, 10) }},
			{"TIME", func(e api.AuditEvent) string { return fmtTime(e.Time) }},
			{"ACTOR", func(e api.AuditEvent) string { return e.Actor }},
			{"ACTION", func(e api.AuditEvent) string { return e.Action }},
			{"TARGET", func(e api.AuditEvent) string { return e.Target }},
			{"DETAIL", func(e api.AuditEvent) string { return detailString(e.Detail) }},
		},
	})
	f := cmd.Flags()
	f.StringVar(&since, "since", "", "events at or after this RFC 3339 time")
	f.StringVar(&until, "until", "", "events before this RFC 3339 time")
	f.StringVar(&action, "action", "", `action, exact ("cert.issued") or a prefix ending in "." ("cert.")`)
	f.StringVar(&actor, "actor", "", "actor, e.g. token:ID or system")
	f.StringVar(&target, "target", "", "target, e.g. a serial or key id")
	f.StringVar(&cursor, "cursor", "", "continue after this sequence number")
	f.IntVar(&limit, "limit", 100, "page size (1-1000)")
	f.BoolVar(&all, "all", false, "fetch every page")
	return cmd
}

func detailString(d map[string]string) string {
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+d[k])
	}
	return strings.Join(parts, " ")
}
