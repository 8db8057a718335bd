package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sigil-ca/sigil/api"
)

func acmeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "acme", Short: "Manage ACME endpoints: external account binding keys"}
	eab := &cobra.Command{Use: "eab", Short: "External account binding keys (RFC 8555 §7.3.4)"}
	eab.AddCommand(acmeEABCreateCmd())
	cmd.AddCommand(eab)
	return cmd
}

func acmeEABCreateCmd() *cobra.Command {
	var cf clientFlags
	var endpoint, requester, format string
	cmd := &cobra.Command{
		Use:   "create [--endpoint NAME] [--requester ID]",
		Short: "Create a key id and HMAC key for an ACME client; the HMAC key is printed once",
		Long: `Create an external account binding key for one ACME endpoint. Give the key id
and HMAC key to whoever runs the ACME client (lego --eab --kid ID --hmac KEY,
certbot --eab-kid ID --eab-hmac-key KEY). The first account registered with it
is bound to the requester identity, which every certificate of that account
records. The HMAC key is shown once; the CA keeps it only encrypted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			if endpoint == "default" {
				endpoint = ""
			}
			k, err := c.CreateEAB(cmd.Context(), api.EABRequest{Endpoint: endpoint, Requester: requester})
			if err != nil {
				return err
			}
			if format == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(k)
			}
			name := k.Endpoint
			if name == "" {
				name = "default"
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "created EAB key for ACME endpoint %s, binding requester %s; the HMAC key is shown once:\n", name, k.Requester)
			fmt.Fprintf(cmd.OutOrStdout(), "key id:   %s\nhmac key: %s\n", k.KeyID, k.HMACKey)
			return nil
		},
	}
	cf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&endpoint, "endpoint", "", `ACME endpoint name from acme.endpoints ("" or "default": /acme/directory)`)
	f.StringVar(&requester, "requester", "", "identity recorded on the bound account's certificates (default: eab:KEYID)")
	f.StringVar(&format, "format", "text", "text or json")
	return cmd
}
