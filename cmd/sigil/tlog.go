package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/api/client"
	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/audit"
)

// logRoot reads the root that must certify the tree head signer: the same
// --ca-file the client trusts for TLS. Without it a head proves nothing.
func logRoot(cf *clientFlags) (*x509.Certificate, error) {
	if cf.caFile == "" {
		return nil, errors.New("--ca-file (or SIGIL_CA_FILE) is required: the root must certify the tree head signer")
	}
	root, err := readCertFile(cf.caFile)
	if err != nil {
		return nil, fmt.Errorf("--ca-file: %w", err)
	}
	return root, nil
}

// verifiedHead checks h's signature and signer against root.
func verifiedHead(h api.TreeHead, root *x509.Certificate) error {
	if _, err := ca.VerifySignedTreeHead(h.Signed().TreeHead, h.SignerCertificate, root); err != nil {
		return fmt.Errorf("tree head of size %d: %w", h.TreeSize, err)
	}
	return nil
}

func fetchHead(ctx context.Context, c *client.Client, size string) (api.TreeHead, error) {
	var q url.Values
	if size != "" {
		q = url.Values{"size": {size}}
	}
	h, err := c.TreeHead(ctx, q)
	if err != nil {
		return api.TreeHead{}, fmt.Errorf("fetch tree head: %w", err)
	}
	return h, nil
}

func headTable(h api.TreeHead) table {
	return table{header: []string{"TREE SIZE", "ROOT HASH", "SIGNED", "KEY"},
		rows: [][]string{{strconv.FormatUint(h.TreeSize, 10), fmt.Sprintf("%x", h.RootHash), h.Timestamp.UTC().Format(time.RFC3339Nano), h.KeyID}}}
}

func auditSTHCmd() *cobra.Command {
	var cf clientFlags
	var format, size, out string
	cmd := &cobra.Command{
		Use:   "sth [--size N] [--out FILE]",
		Short: "Fetch and verify a signed tree head of the transparency log",
		Long: `Fetches the latest signed tree head (or the newest of --size leaves), checks
its signature and that the root (--ca-file) certifies its signer, prints it and,
with --out, saves it as JSON for a later "sigil audit consistency OLD NEW".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.connect(format)
			if err != nil {
				return err
			}
			root, err := logRoot(&cf)
			if err != nil {
				return err
			}
			h, err := fetchHead(cmd.Context(), c, size)
			if err != nil {
				return err
			}
			if err := verifiedHead(h, root); err != nil {
				return err
			}
			if out != "" {
				data, err := json.MarshalIndent(h, "", "  ")
				if err != nil {
					return err
				}
				if err := os.WriteFile(out, append(data, '\n'), 0o644); err != nil {
					return fmt.Errorf("--out: %w", err)
				}
			}
			return render(cmd.OutOrStdout(), format, headTable(h), h)
		},
	}
	cf.register(cmd)
	addFormatFlag(cmd, &format)
	cmd.Flags().StringVar(&size, "size", "", "fetch the newest head of this tree size instead of the latest")
	cmd.Flags().StringVar(&out, "out", "", "also save the verified head to this file (JSON)")
	return cmd
}

// ProveResult is what `sigil audit prove` reports.
type ProveResult struct {
	Serial    string    `json:"serial"`
	LeafIndex uint64    `json:"leaf_index"`
	Issued    time.Time `json:"issued"`
	TreeSize  uint64    `json:"tree_size"`
	RootHash  []byte    `json:"root_hash"`
	SignedAt  time.Time `json:"signed_at"`
	Verified  bool      `json:"verified"`
}

func auditProveCmd() *cobra.Command {
	var cf clientFlags
	var format string
	cmd := &cobra.Command{
		Use:   "prove SERIAL",
		Short: "Prove a certificate is in the transparency log, checked client-side",
		Long: `Fetches the certificate, the latest signed tree head and an inclusion proof,
then checks here: the head's signature and signer against --ca-file, that the
logged leaf holds exactly this certificate, and the proof against the head's
root (RFC 9162). Exit status 0 only if all hold. A certificate issued after the
latest head is not provable until the next head (the log-sign job).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := cf.connect(format)
			if err != nil {
				return err
			}
			root, err := logRoot(&cf)
			if err != nil {
				return err
			}
			serial, err := ca.NormalizeSerial(args[0])
			if err != nil {
				return err
			}
			cert, err := c.Certificate(ctx, serial)
			if err != nil {
				return fmt.Errorf("fetch certificate: %w", err)
			}
			block, _ := pem.Decode([]byte(cert.PEM))
			if block == nil {
				return errors.New("the server returned no PEM certificate")
			}
			h, err := fetchHead(ctx, c, "")
			if err != nil {
				return err
			}
			if err := verifiedHead(h, root); err != nil {
				return err
			}
			q := url.Values{"serial": {serial}, "tree_size": {strconv.FormatUint(h.TreeSize, 10)}}
			p, err := c.InclusionProof(ctx, q)
			if err != nil {
				return fmt.Errorf("fetch inclusion proof: %w", err)
			}
			issued, der, err := audit.ParseLogLeaf(p.Leaf)
			if err != nil {
				return err
			}
			if !bytes.Equal(der, block.Bytes) {
				return fmt.Errorf("leaf %d does not hold certificate %s", p.LeafIndex, serial)
			}
			if p.TreeSize != h.TreeSize {
				return fmt.Errorf("proof is for tree size %d, the head has %d", p.TreeSize, h.TreeSize)
			}
			if err := ca.VerifyInclusion(h.Signed().TreeHead, p.LeafIndex, p.Leaf, p.AuditPath); err != nil {
				return fmt.Errorf("inclusion proof of %s does NOT verify: %w", serial, err)
			}
			res := ProveResult{Serial: serial, LeafIndex: p.LeafIndex, Issued: issued, TreeSize: h.TreeSize,
				RootHash: h.RootHash, SignedAt: h.Timestamp, Verified: true}
			t := table{header: []string{"SERIAL", "LEAF", "ISSUED", "TREE SIZE", "ROOT HASH", "SIGNED", "RESULT"},
				rows: [][]string{{serial, strconv.FormatUint(p.LeafIndex, 10), issued.Format(time.RFC3339), strconv.FormatUint(h.TreeSize, 10),
					fmt.Sprintf("%x", h.RootHash), h.Timestamp.UTC().Format(time.RFC3339), "included (verified)"}}}
			return render(cmd.OutOrStdout(), format, t, res)
		},
	}
	cf.register(cmd)
	addFormatFlag(cmd, &format)
	return cmd
}

// ConsistencyResult is what `sigil audit consistency` reports.
type ConsistencyResult struct {
	OldSize  uint64 `json:"old_size"`
	OldRoot  []byte `json:"old_root"`
	NewSize  uint64 `json:"new_size"`
	NewRoot  []byte `json:"new_root"`
	Verified bool   `json:"verified"`
}

func readHeadFile(path string) (api.TreeHead, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return api.TreeHead{}, err
	}
	var h api.TreeHead
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return api.TreeHead{}, fmt.Errorf("%s: not a saved tree head: %w", path, err)
	}
	return h, nil
}

func auditConsistencyCmd() *cobra.Command {
	var cf clientFlags
	var format string
	cmd := &cobra.Command{
		Use:   "consistency OLD_STH NEW_STH",
		Short: "Prove that a newer tree head extends an older one, checked client-side",
		Long: `Reads two tree heads saved by "sigil audit sth --out", checks both signatures
and signers against --ca-file, fetches a consistency proof between their sizes
and verifies it (RFC 9162): nothing logged by the old head was removed or
rewritten. Exit status 0 only if it holds.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.connect(format)
			if err != nil {
				return err
			}
			root, err := logRoot(&cf)
			if err != nil {
				return err
			}
			var heads [2]api.TreeHead
			for i, path := range args {
				if heads[i], err = readHeadFile(path); err != nil {
					return err
				}
				if err := verifiedHead(heads[i], root); err != nil {
					return fmt.Errorf("%s: %w", path, err)
				}
			}
			old, cur := heads[0], heads[1]
			if old.TreeSize > cur.TreeSize {
				return fmt.Errorf("%s has %d leaves, more than %s (%d): give the older head first", args[0], old.TreeSize, args[1], cur.TreeSize)
			}
			q := url.Values{"first": {strconv.FormatUint(old.TreeSize, 10)}, "second": {strconv.FormatUint(cur.TreeSize, 10)}}
			p, err := c.ConsistencyProof(cmd.Context(), q)
			if err != nil {
				return fmt.Errorf("fetch consistency proof: %w", err)
			}
			if err := ca.VerifyConsistency(old.Signed().TreeHead, cur.Signed().TreeHead, p.Proof); err != nil {
				return fmt.Errorf("the tree of %d leaves is NOT a prefix of the tree of %d: %w", old.TreeSize, cur.TreeSize, err)
			}
			res := ConsistencyResult{OldSize: old.TreeSize, OldRoot: old.RootHash, NewSize: cur.TreeSize, NewRoot: cur.RootHash, Verified: true}
			t := table{header: []string{"OLD SIZE", "OLD ROOT", "NEW SIZE", "NEW ROOT", "RESULT"},
				rows: [][]string{{strconv.FormatUint(old.TreeSize, 10), fmt.Sprintf("%x", old.RootHash),
					strconv.FormatUint(cur.TreeSize, 10), fmt.Sprintf("%x", cur.RootHash), "consistent (verified)"}}}
			return render(cmd.OutOrStdout(), format, t, res)
		},
	}
	cf.register(cmd)
	addFormatFlag(cmd, &format)
	return cmd
}
