package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/api/client"
	"github.com/sigil-ca/sigil/lifecycle/managed"
)

func managedCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "managed",
		Short: "Managed certificates: the CA holds the key, renews and rotates it, and delivers the bundle to its identity",
	}
	cmd.AddCommand(managedCreateCmd(), managedListCmd(), managedShowCmd(), managedDeleteCmd(), managedRenewCmd())
	return cmd
}

func managedCreateCmd() *cobra.Command {
	var cf clientFlags
	var format string
	var req api.ManagedRequest
	var validity, revokeAfter time.Duration
	cmd := &cobra.Command{
		Use:   "create NAME --san NAME... --profile P [--key-type T] [--renew-at 2/3] [--rotate-key always|never|every:N] [--revoke-previous-after D]",
		Short: "Create a managed certificate: the CA generates and keeps its key and issues its first version",
		Long: `Create a managed certificate. The CA generates the key (sealed in its key
inventory, purpose "managed"), issues the first version through the profile
and name policy, and from then on the managed-renew job renews it when
--renew-at of its lifetime has passed (at once if it is revoked), rotating the
key per --rotate-key, and, with --revoke-previous-after, revokes each
superseded version (reason superseded) that long after its successor.
The identity fetches its chain and key from /v1/managed/NAME/bundle with its
current or previous certificate (mTLS) or a token from
"sigil token create --role managed --managed NAME".`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.connect(format)
			if err != nil {
				return err
			}
			req.Name = args[0]
			if validity > 0 {
				req.Validity = validity.String()
			}
			if cmd.Flags().Changed("revoke-previous-after") {
				if revokeAfter < 0 {
					return fmt.Errorf("--revoke-previous-after must not be negative")
				}
				req.RevokePreviousAfter = revokeAfter.String()
			}
			m, err := c.CreateManaged(cmd.Context(), req)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "created managed certificate %s (version %d, serial %s)\n", m.Name, m.Version, m.Serial)
			return printManaged(cmd.OutOrStdout(), format, m)
		},
	}
	cf.register(cmd)
	addFormatFlag(cmd, &format)
	f := cmd.Flags()
	f.StringSliceVar(&req.SANs, "san", nil, "subject alternative name (DNS name, IP, email or URI); repeatable (required)")
	f.StringVar(&req.Profile, "profile", "", "issuance profile (required)")
	f.StringVar(&req.KeyType, "key-type", "ecdsa-p256", "key type: ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072, rsa-4096 or ed25519")
	f.DurationVar(&validity, "validity", 0, "validity of each version (default: the profile's)")
	f.StringVar(&req.RenewAt, "renew-at", managed.DefaultRenewAt, "renew when this fraction of a version's lifetime has passed (2/3, 0.5, 75%)")
	f.StringVar(&req.RotateKey, "rotate-key", "always", "key rotation at renewal: always, never or every:N (every Nth renewal)")
	f.DurationVar(&revokeAfter, "revoke-previous-after", 0, "revoke each superseded version this long after its successor (default: never)")
	_ = cmd.MarkFlagRequired("san")
	_ = cmd.MarkFlagRequired("profile")
	return cmd
}

func managedListCmd() *cobra.Command {
	var deleted bool
	cmd := listCmd(&cobra.Command{
		Use:   "list [--deleted]",
		Short: "List managed certificates: current version, expiry, next renewal, rotation policy",
		Args:  cobra.NoArgs,
	}, listSpec[api.ManagedList, managed.Cert]{
		fetch: func(ctx context.Context, c *client.Client, _ []string) (api.ManagedList, error) {
			params := map[string]string{}
			if deleted {
				params["deleted"] = "true"
			}
			ms, _, err := fetchList(ctx, c.ListManaged, params, 1000, true,
				func(l api.ManagedList) ([]managed.Cert, string) { return l.Managed, l.NextCursor })
			return api.ManagedList{Managed: ms}, err
		},
		items: func(l api.ManagedList) []managed.Cert { return l.Managed },
		cols: []column[managed.Cert]{
			{"NAME", func(m managed.Cert) string { return m.Name }},
			{"STATE", func(m managed.Cert) string { return m.State }},
			{"PROFILE", func(m managed.Cert) string { return m.Profile }},
			{"VERSION", func(m managed.Cert) string { return strconv.Itoa(m.Version) }},
			{"SERIAL", func(m managed.Cert) string { return m.Serial }},
			{"NOT AFTER", func(m managed.Cert) string { return fmtTime(m.NotAfter) }},
			{"RENEW DUE", func(m managed.Cert) string {
				if m.State != "active" {
					return "-" // renewed no more
				}
				return fmtTime(m.RenewDue)
			}},
			{"ROTATE KEY", func(m managed.Cert) string { return m.RotateKey }},
			{"LAST ERROR", func(m managed.Cert) string { return m.LastError }},
		},
	})
	cmd.Flags().BoolVar(&deleted, "deleted", false, "include deleted managed certificates")
	return cmd
}

func managedShowCmd() *cobra.Command {
	var cf clientFlags
	var format string
	cmd := &cobra.Command{
		Use:   "show NAME",
		Short: "Show a managed certificate and every version: serial, key id, validity, state",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.connect(format)
			if err != nil {
				return err
			}
			m, err := c.Managed(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printManaged(cmd.OutOrStdout(), format, m)
		},
	}
	cf.register(cmd)
	addFormatFlag(cmd, &format)
	return cmd
}

// printManaged writes a managed certificate as "field: value" lines and,
// when it has them, a table of its versions; CSV is the versions table.
func printManaged(w io.Writer, format string, m managed.Cert) error {
	versions := table{header: []string{"VERSION", "SERIAL", "KEY ID", "NOT BEFORE", "NOT AFTER", "STATE", "REASON"}}
	for _, v := range m.Versions {
		state := v.State
		if v.RevokeReason != "" {
			state += " (" + v.RevokeReason + ")"
		} else if !v.RevokeAt.IsZero() {
			state += ", revoke at " + fmtTime(v.RevokeAt)
		}
		versions.rows = append(versions.rows, []string{strconv.Itoa(v.Version), v.Serial, v.KeyID, fmtTime(v.NotBefore),
			fmtTime(v.NotAfter), state, v.Reason})
	}
	switch format {
	case "json":
		return render(w, "json", table{}, m)
	case "csv":
		return render(w, "csv", versions, nil)
	}
	revoke := m.RevokePreviousAfter
	if revoke == "" {
		revoke = "never"
	}
	validity := m.Validity
	if validity == "" {
		validity = "profile default"
	}
	rows := [][]string{
		{"name", m.Name}, {"state", m.State}, {"profile", m.Profile}, {"sans", strings.Join(m.SANs, ", ")},
		{"key type", m.KeyType}, {"validity", validity}, {"renew at", m.RenewAt}, {"rotate key", m.RotateKey},
		{"revoke previous after", revoke}, {"created", fmtTime(m.Created) + " by " + m.CreatedBy},
		{"version", strconv.Itoa(m.Version)}, {"serial", m.Serial}, {"key id", m.KeyID},
		{"not after", fmtTime(m.NotAfter)}, {"renew due", fmtTime(m.RenewDue)},
	}
	if !m.Deleted.IsZero() {
		rows = append(rows, []string{"deleted", fmtTime(m.Deleted)})
	}
	if m.LastError != "" {
		rows = append(rows, []string{"last error", fmtTime(m.LastAttempt) + ": " + m.LastError})
	}
	width := 0
	for _, r := range rows {
		width = max(width, len(r[0])+1)
	}
	for _, r := range rows {
		fmt.Fprintf(w, "%-*s %s\n", width, r[0]+":", r[1])
	}
	if len(versions.rows) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	return render(w, "table", versions, nil)
}

func managedDeleteCmd() *cobra.Command {
	var cf clientFlags
	var destroyKeys bool
	cmd := &cobra.Command{
		Use:   "delete NAME [--destroy-keys]",
		Short: "Stop renewing a managed certificate; its keys are destroyed when their certificates expire, or at once",
		Long: `Delete a managed certificate: it is renewed no more and its bundle can no
longer be fetched. Its current key is retired and destroyed (crypto-shredded,
audited) when the last certificate issued with it expires, and its
certificates stay valid (revoke them with "sigil cert revoke" if they must
not be used any more).

With --destroy-keys every key it still holds is destroyed at once and, in
the same transaction, every unexpired certificate of it is revoked with
reason cessationOfOperation: copies of the keys live on the servers that
fetched them. The name is not reused.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			m, err := c.DeleteManaged(cmd.Context(), args[0], destroyKeys)
			if err != nil {
				return err
			}
			what := "its keys are destroyed when their certificates expire"
			if destroyKeys {
				what = "its keys were destroyed and its unexpired certificates revoked (cessationOfOperation)"
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "deleted managed certificate %s; %s\n", m.Name, what)
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().BoolVar(&destroyKeys, "destroy-keys", false, "destroy (crypto-shred) every key of it now and revoke its unexpired certificates (cessationOfOperation)")
	return cmd
}

func managedRenewCmd() *cobra.Command {
	var cf clientFlags
	var format string
	cmd := &cobra.Command{
		Use:   "renew NAME",
		Short: "Renew a managed certificate now (rotating its key per policy)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.connect(format)
			if err != nil {
				return err
			}
			m, err := c.RenewManaged(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "renewed managed certificate %s: version %d, serial %s\n", m.Name, m.Version, m.Serial)
			return printManaged(cmd.OutOrStdout(), format, m)
		},
	}
	cf.register(cmd)
	addFormatFlag(cmd, &format)
	return cmd
}
