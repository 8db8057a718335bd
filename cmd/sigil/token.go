package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/api/client"
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
	return listCmd(&cobra.Command{
		Use:   "list",
		Short: "List tokens (never their secrets)",
		Args:  cobra.NoArgs,
	}, listSpec[api.TokenList, api.Token]{
		fetch: func(ctx context.Context, c *client.Client, _ []string) (api.TokenList, error) { return c.Tokens(ctx) },
		items: func(l api.TokenList) []api.Token { return l.Tokens },
		cols: []column[api.Token]{
			{"ID", func(k api.Token) string { return k.ID }},
			{"ROLE", func(k api.Token) string { return k.Role }},
			{"SCOPE", func(k api.Token) string {
				if k.Managed != "" {
					return "managed:" + k.Managed
				}
				return strings.Join(k.Profiles, ",")
			}},
			{"CREATED", func(k api.Token) string { return fmtTime(k.Created) }},
			{"EXPIRES", func(k api.Token) string { return fmtTime(k.Expires) }},
			{"REVOKED", func(k api.Token) string { return fmtTime(k.Revoked) }},
			{"DESCRIPTION", func(k api.Token) string { return k.Description }},
		},
	})
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
