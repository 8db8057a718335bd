package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/api/client"
	"github.com/sigil-ca/sigil/ca"
)

// IntermediateConfig is the intermediate: section of sigil.yaml (the
// intermediate-rotate job).
type IntermediateConfig struct {
	// RotateAt is the point of the active intermediate's lifetime at which
	// it is replaced: a fraction such as 2/3 (the default), 0.75 or 80%.
	RotateAt string `yaml:"rotate_at"`
	// DestroyAfter is how long after the last certificate of an
	// intermediate rotated out expired its key is destroyed (default: the
	// CRL validity, so that the last CRL it signed serves its full term).
	DestroyAfter *ca.Duration `yaml:"destroy_after"`
}

func (c IntermediateConfig) validate() error {
	if _, err := ca.ParseLifetimePoint("intermediate.rotate_at", c.RotateAt, ca.DefaultIntermediateRotateAt); err != nil {
		return err
	}
	if c.DestroyAfter != nil && *c.DestroyAfter < 0 {
		return fmt.Errorf("intermediate.destroy_after %s: must not be negative", *c.DestroyAfter)
	}
	return nil
}

// destroyAfter is DestroyAfter or its default, the CRL validity.
func (c *Config) destroyAfter() time.Duration {
	if d := c.Intermediate.DestroyAfter; d != nil {
		return time.Duration(*d)
	}
	return time.Duration(c.CRL.Validity)
}

func caRotateIntermediateCmd() *cobra.Command {
	var cf clientFlags
	var reason, format string
	cmd := &cobra.Command{
		Use:   "rotate-intermediate",
		Short: "Replace the active intermediate now: a new key, signed by the root; the old one keeps signing CRLs and OCSP for its certificates",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.connect(format)
			if err != nil {
				return err
			}
			rot, err := c.RotateIntermediate(cmd.Context(), api.RotateRequest{Reason: reason})
			if err != nil {
				return err
			}
			if format != "table" {
				t := table{header: []string{"PREVIOUS", "CURRENT", "KEY", "MANAGED DUE"},
					rows: [][]string{{rot.Previous, rot.Current, rot.KeyID, fmt.Sprint(rot.ManagedDue)}}}
				return render(cmd.OutOrStdout(), format, t, rot)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "intermediate rotated: %s is issuing (key %s); %s is retired and signs CRLs and OCSP until its last certificate expires\n",
				rot.Current, rot.KeyID, rot.Previous)
			if rot.ManagedDue > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "%d managed certificates of %s are due for renewal\n", rot.ManagedDue, rot.Previous)
			}
			return nil
		},
	}
	cf.register(cmd)
	addFormatFlag(cmd, &format)
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the audit log (default \"by hand\")")
	return cmd
}

func caIntermediatesCmd() *cobra.Command {
	return listCmd(&cobra.Command{
		Use:   "intermediates",
		Short: "List the intermediates: active, retired (rotated out) and destroyed",
		Args:  cobra.NoArgs,
	}, listSpec[api.IntermediateList, api.Intermediate]{
		fetch: func(ctx context.Context, c *client.Client, _ []string) (api.IntermediateList, error) {
			out, err := c.Intermediates(ctx)
			if err == nil && len(out.Intermediates) == 0 {
				err = errors.New("the server lists no intermediate")
			}
			return out, err
		},
		items: func(l api.IntermediateList) []api.Intermediate { return l.Intermediates },
		cols: []column[api.Intermediate]{
			{"ID", func(i api.Intermediate) string { return i.ID }},
			{"STATE", func(i api.Intermediate) string { return i.State }},
			{"KEY", func(i api.Intermediate) string { return i.KeyID }},
			{"NOT BEFORE", func(i api.Intermediate) string { return fmtTime(i.NotBefore) }},
			{"NOT AFTER", func(i api.Intermediate) string { return fmtTime(i.NotAfter) }},
			{"LAST LEAF EXPIRY", func(i api.Intermediate) string { return fmtTime(i.LastExpiry) }},
			{"SUBJECT", func(i api.Intermediate) string { return i.Subject }},
		},
	})
}
