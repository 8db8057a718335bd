package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sigil-ca/sigil/api"
)

func tokenCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Create, list and revoke API tokens"}
	cmd.AddCommand(tokenCreateCmd(), tokenListCmd(), tokenRevokeCmd())
	return cmd
}

func tokenCreateCmd() *cobra.Command {
	var cf clientFlags
	var role, description, managed string
	var profiles []string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "create --role admin|issuer|auditor|managed [--profiles P,...] [--managed NAME] [--ttl D]",
		Short: "Create a token; its secret is printed once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			req := api.TokenRequest{Role: role, Profiles: profiles, Description: description, Managed: managed}
			if ttl > 0 {
				req.TTL = ttl.String()
			}
			t, err := c.CreateToken(cmd.Context(), req)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "created %s token %s (expires %s); the secret below is shown once:\n", t.Role, t.ID, fmtTime(t.Expires))
			fmt.Fprintln(cmd.OutOrStdout(), t.Secret)
			return nil
		},
	}
	cf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&role, "role", "", "admin, issuer, auditor or managed (required)")
	f.StringSliceVar(&profiles, "profiles", nil, "profiles an issuer token may use")
	f.StringVar(&managed, "managed", "", "the managed certificate a managed token may fetch the bundle of")
	f.DurationVar(&ttl, "ttl", 0, "lifetime, e.g. 720h (default: no expiry)")
	f.StringVar(&description, "description", "", "what the token is for")
	_ = cmd.MarkFlagRequired("role")
	return cmd
}

func tokenListCmd() *cobra.Command {
	var cf clientFlags
	var format string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List tokens (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.connect(format)
			if err != nil {
				return err
			}
			resp, err := c.Tokens(cmd.Context())
			if err != nil {
				return err
			}
			t := table{header: []string{"ID", "ROLE", "SCOPE", "CREATED", "EXPIRES", "REVOKED", "DESCRIPTION"}}
			for _, k := range resp.Tokens {
				scope := strings.Join(k.Profiles, ",")
				if k.Managed != "" {
					scope = "managed:" + k.Managed
				}
				t.rows = append(t.rows, []string{k.ID, k.Role, scope, fmtTime(k.Created), fmtTime(k.Expires), fmtTime(k.Revoked), k.Description})
			}
			return render(cmd.OutOrStdout(), format, t, resp)
		},
	}
	cf.register(cmd)
	addFormatFlag(cmd, &format)
	return cmd
}

func tokenRevokeCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a token",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			if err := c.RevokeToken(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "revoked token %s\n", args[0])
			return nil
		},
	}
	cf.register(cmd)
	return cmd
}
