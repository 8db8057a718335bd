package main

import "github.com/spf13/cobra"

// acmeFlags are the validation overrides shared by dev and serve (DESIGN.md CLI).
type acmeFlags struct {
	resolver string
	httpPort int
	tlsPort  int
}

func (f *acmeFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.resolver, "acme-resolver", "", "DNS server host:port for ACME challenge validation (default: acme.resolver, else the system resolver)")
	fl.IntVar(&f.httpPort, "acme-http-port", 0, "port http-01 validation connects to (default: acme.http_port, 80)")
	fl.IntVar(&f.tlsPort, "acme-tls-port", 0, "port tls-alpn-01 validation connects to (default: acme.tls_port, 443)")
}

// apply overrides the config with the flags that were given, then revalidates.
func (f *acmeFlags) apply(cmd *cobra.Command, cfg *Config) error {
	if cmd.Flags().Changed("acme-resolver") {
		cfg.ACME.Resolver = f.resolver
	}
	if cmd.Flags().Changed("acme-http-port") {
		cfg.ACME.HTTPPort = f.httpPort
	}
	if cmd.Flags().Changed("acme-tls-port") {
		cfg.ACME.TLSPort = f.tlsPort
	}
	return cfg.Validate()
}
