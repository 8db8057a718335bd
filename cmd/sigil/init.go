package main

import (
	"context"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/spf13/cobra"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/keystore"
	"github.com/sigil-ca/sigil/internal/atomicfile"
)

type initOptions struct {
	dir            string
	name           string
	org            string
	rootKey        string
	intKey         string
	rootValidity   time.Duration
	intValidity    time.Duration
	httpsAddr      string
	httpAddr       string
	externalURL    string
	names          []string
	passphraseFile string
	fastKDF        bool
	rootKeyURI     string
	intKeyURI      string
	rootBackend    string
	intBackend     string
	// store is --store: a postgres:// URL puts the records in PostgreSQL.
	store  string
	kekURI string
}

func initCmd() *cobra.Command { return newInitCmd(&initOptions{}) }

// newInitCmd is sigil init with its flags parsed into o.
func newInitCmd(o *initOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "init --dir DIR",
		Short: "Create a new CA: root, intermediate, audit key, sigil.yaml and root.pem",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var pass []byte
			if o.kekURI != "" {
				// The KMS key wraps every data key: there is no passphrase
				// to give, and one given would protect nothing.
				if o.passphraseFile != "" {
					return errors.New("--kek-uri: the KEK is held in KMS, so sigil init takes no passphrase; drop --passphrase-file")
				}
			} else {
				var err error
				if pass, err = (passphraseSource{file: o.passphraseFile, envVar: "SIGIL_PASSPHRASE", prompt: "New CA passphrase"}).read(true); err != nil {
					return err
				}
				if err := checkNewPassphrase(pass); err != nil {
					return err
				}
			}
			res, err := runInit(cmd.Context(), *o, pass)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Initialized Sigil CA in %s\n", o.dir)
			fmt.Fprintf(out, "  config:       %s\n", filepath.Join(o.dir, "sigil.yaml"))
			fmt.Fprintf(out, "  root:         %s\n", filepath.Join(o.dir, "root.pem"))
			fmt.Fprintf(out, "  root SHA-256: %s\n", ca.Fingerprint(res.Root))
			fmt.Fprintf(out, "  root CRL:     signed, next update %s; sign the next with sigil ca root-crl before then\n",
				res.RootCRL.NextUpdate.UTC().Format(time.DateOnly))
			fmt.Fprintf(out, "\nAdmin token (shown once; store it now):\n\n  %s\n\n", res.AdminToken)
			fmt.Fprintf(out, "Start it with: sigil serve --config %s\n", filepath.Join(o.dir, "sigil.yaml"))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dir, "dir", "", "directory for sigil.yaml, the database and root.pem (required)")
	f.StringVar(&o.name, "name", "Sigil CA", "CA name used in certificate subjects")
	f.StringVar(&o.org, "organization", "", "organization name in CA subjects")
	f.StringVar(&o.rootKey, "root-key-type", "ecdsa-p384", "root key algorithm: ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072, rsa-4096, ed25519")
	f.StringVar(&o.intKey, "intermediate-key-type", "ecdsa-p256", "intermediate key algorithm (same choices)")
	f.DurationVar(&o.rootValidity, "root-validity", 10*365*24*time.Hour, "root certificate lifetime")
	f.DurationVar(&o.intValidity, "intermediate-validity", 5*365*24*time.Hour, "intermediate certificate lifetime")
	f.StringVar(&o.httpsAddr, "https-addr", "127.0.0.1:8443", "HTTPS listen address written to sigil.yaml")
	f.StringVar(&o.httpAddr, "http-addr", "127.0.0.1:8080", "HTTP listen address written to sigil.yaml")
	f.StringVar(&o.externalURL, "external-url", "", "base URL of the HTTP listener for AIA/CRL URLs (default http://HTTP-ADDR)")
	f.StringSliceVar(&o.names, "https-name", []string{"localhost", "127.0.0.1"}, "names on the HTTPS serving certificate")
	f.StringVar(&o.passphraseFile, "passphrase-file", "", "file holding the new CA passphrase (else SIGIL_PASSPHRASE or a prompt)")
	f.StringVar(&o.rootKeyURI, "root-key-uri", "", "hold the root key in an HSM or KMS: a pkcs11: or awskms: key URI, created there if absent (PIN from pin-source= or "+hsmPINEnv+")")
	f.StringVar(&o.intKeyURI, "intermediate-key-uri", "", "hold the intermediate key in an HSM or KMS (same forms as --root-key-uri)")
	f.StringVar(&o.rootBackend, "root-key-backend", "", "softkms (in the database, the default), pkcs11 or awskms; checked against --root-key-uri")
	f.StringVar(&o.intBackend, "intermediate-key-backend", "", "as --root-key-backend, for --intermediate-key-uri")
	f.StringVar(&o.store, "store", "", "postgres://user@host:port/db to keep the records in an empty PostgreSQL database (password: "+storePasswordEnv+"); default SQLite in --dir")
	f.StringVar(&o.kekURI, "kek-uri", "", "wrap the CA's keys with a KEK in AWS KMS instead of a passphrase: an awskms: URI naming a symmetric key, or none to create one (credentials from the AWS SDK's chain; endpoint from the profile or AWS_ENDPOINT_URL)")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}

// runInit creates the CA in o.dir. On failure it leaves no database behind.
func runInit(ctx context.Context, o initOptions, passphrase []byte) (res *ca.InitResult, err error) {
	rootAlg, err := keystore.ParseAlgorithm(o.rootKey)
	if err != nil {
		return nil, fmt.Errorf("--root-key-type: %w", err)
	}
	intAlg, err := keystore.ParseAlgorithm(o.intKey)
	if err != nil {
		return nil, fmt.Errorf("--intermediate-key-type: %w", err)
	}
	if err := os.MkdirAll(o.dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", o.dir, err)
	}
	cfgPath := filepath.Join(o.dir, "sigil.yaml")
	if _, err := os.Stat(cfgPath); err == nil {
		return nil, fmt.Errorf("%s exists: this directory already holds a CA", cfgPath)
	}
	cfg := &Config{Database: "sigil.db", HTTPS: HTTPSConfig{Addr: o.httpsAddr, Names: o.names},
		HTTP: HTTPConfig{Addr: o.httpAddr}, ExternalURL: o.externalURL, dir: o.dir}
	if err := storeFlag(&cfg.Store, o.store); err != nil {
		return nil, err
	}
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	rootPath := filepath.Join(o.dir, "root.pem")
	var created []string // removed again if init fails
	defer func() {
		if err != nil {
			for _, p := range created {
				_ = os.Remove(p)
			}
		}
	}()
	created = append(created, rootPath, cfgPath)
	if !cfg.Store.postgres() {
		dbPath := cfg.DatabasePath()
		if _, err := os.Stat(dbPath); err == nil {
			return nil, fmt.Errorf("%s exists: this directory already holds a CA", dbPath)
		}
		created = append(created, dbPath, dbPath+"-wal", dbPath+"-shm")
		// SQLite gives the -wal and -shm files the database file's mode.
		f, err := os.OpenFile(dbPath, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return nil, fmt.Errorf("create database: %w", err)
		}
		f.Close()
	}
	clk := clockwork.NewRealClock()
	st, err := openStore(ctx, cfg, clk, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	defer func() { err = errors.Join(err, st.Close()) }()
	if cfg.Store.postgres() {
		// A shared database is joined by sigil serve, never initialized twice.
		if keys, err := st.Keys(ctx); err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		} else if len(keys) > 0 {
			return nil, fmt.Errorf("%s already holds a CA: start sigil serve against it instead", cfg.StoreName())
		}
	}
	params := keystore.DefaultKDFParams
	if o.fastKDF {
		params = keystore.FastKDFParams
	}
	kdf, err := params(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("kdf parameters: %w", err)
	}
	keys := newKeyBackends()
	defer func() { err = errors.Join(err, keys.Close()) }()
	rootKey, err := backendKey(ctx, keys, "root", o.rootBackend, o.rootKeyURI, rootAlg)
	if err != nil {
		return nil, err
	}
	intKey, err := backendKey(ctx, keys, "intermediate", o.intBackend, o.intKeyURI, intAlg)
	if err != nil {
		return nil, err
	}
	kek, err := remoteKEK(ctx, keys, o.kekURI)
	if err != nil {
		return nil, fmt.Errorf("--kek-uri: %w", err)
	}
	res, err = ca.Init(ctx, st, ca.InitConfig{
		Name: o.name, Organization: o.org, RootAlgorithm: rootAlg, IntermediateAlgorithm: intAlg,
		RootValidity: o.rootValidity, IntermediateValidity: o.intValidity, BaseURL: cfg.ExternalURL,
		Passphrase: passphrase, KDF: kdf, Clock: clk,
		RootKey: rootKey, IntermediateKey: intKey, Backends: keys, KEK: kek,
	})
	if err != nil {
		return nil, err
	}
	st.SetCheckpointer(res.Checkpointer)
	if err := st.Checkpoint(ctx); err != nil {
		return nil, fmt.Errorf("first audit checkpoint: %w", err)
	}
	if err := atomicfile.WriteFile(rootPath, pemBytes(res.Root.Raw), 0o644); err != nil {
		return nil, err
	}
	if err := WriteConfig(cfgPath, cfg); err != nil {
		return nil, err
	}
	return res, nil
}

func pemBytes(der ...[]byte) []byte {
	var out []byte
	for _, d := range der {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
	}
	return out
}

// serveOptions are the flags of sigil serve.
type serveOptions struct {
	configPath, passphraseFile, httpsAddr, httpAddr string
	store, node                                     string
	allowBrokenAudit                                bool
	af                                              acmeFlags
	clock                                           clockwork.Clock // nil: the wall clock (tests set a fake one)
}

func serveCmd() *cobra.Command { return newServeCmd(&serveOptions{}) }

// newServeCmd is sigil serve with its flags parsed into o.
func newServeCmd(o *serveOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve --config DIR/sigil.yaml",
		Short: "Run the CA: HTTPS (API) and HTTP (OCSP, CRL, issuers) listeners",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := o.start(cmd)
			if err != nil {
				return err
			}
			s.log.Info("serving", "https", s.HTTPSURL(), "http", s.HTTPURL())
			fmt.Fprintf(cmd.OutOrStdout(), "Sigil serving: API %s/v1/  HTTP %s\n", s.HTTPSURL(), s.HTTPURL())
			return s.runUntilSignal()
		},
	}
	o.register(cmd)
	return cmd
}

func (o *serveOptions) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.configPath, "config", "sigil.yaml", "path to sigil.yaml")
	f.StringVar(&o.passphraseFile, "passphrase-file", "", "file holding the CA passphrase (else SIGIL_PASSPHRASE or a prompt)")
	f.StringVar(&o.httpsAddr, "https-addr", "", "override https.addr")
	f.StringVar(&o.httpAddr, "http-addr", "", "override http.addr")
	f.StringVar(&o.store, "store", "", "override store: postgres://user@host:port/db (password: "+storePasswordEnv+")")
	f.StringVar(&o.node, "node", "", "override node.name: this node's name among those sharing the database")
	f.BoolVar(&o.allowBrokenAudit, "allow-broken-audit", false,
		"start even if the audit chain since its last checkpoint does not verify (forensics only: the break is logged and audited)")
	o.af.register(cmd)
}

// start loads the config with the flags' overrides, reads the passphrase
// and starts the server, logging to cmd's stderr. The in-process tests call
// it with the flags parsed, so they run what sigil serve runs.
func (o *serveOptions) start(cmd *cobra.Command) (*server, error) {
	cfg, err := LoadConfig(o.configPath)
	if err != nil {
		return nil, err
	}
	if o.httpsAddr != "" {
		cfg.HTTPS.Addr = o.httpsAddr
	}
	if o.httpAddr != "" {
		cfg.HTTP.Addr = o.httpAddr
	}
	if err := storeFlag(&cfg.Store, o.store); err != nil {
		return nil, err
	}
	if o.node != "" {
		cfg.Node.Name = o.node
	}
	cfg.allowBrokenAudit = o.allowBrokenAudit
	cfg.clock = o.clock
	if err := o.af.apply(cmd, cfg); err != nil {
		return nil, err
	}
	// The passphrase is read only if the CA's KEK is derived from one: a CA
	// whose KEK is in KMS starts with the backend's credentials alone.
	var pass []byte
	defer func() { clear(pass) }()
	readPass := func() ([]byte, error) {
		var err error
		pass, err = passphraseSource{file: o.passphraseFile, envVar: "SIGIL_PASSPHRASE", prompt: "CA passphrase"}.read(false)
		return pass, err
	}
	return startServer(cmd.Context(), cfg, readPass, newLogger(cmd.ErrOrStderr(), cfg.Log), false)
}
