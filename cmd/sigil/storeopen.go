package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
	"github.com/sigil-ca/sigil/store/postgres"
)

// StoreConfig says which backend holds the CA's records: the SQLite file
// named by database (the default), or a PostgreSQL database that several
// nodes share (issue 17).
type StoreConfig struct {
	// Driver is "sqlite" (or empty) or "postgres".
	Driver string `yaml:"driver"`
	// DSN is the PostgreSQL connection URL (postgres://user@host/db), with
	// no password: the password comes from SIGIL_STORE_PASSWORD, the file
	// PasswordFile, or the DSN's passfile (~/.pgpass by default).
	DSN string `yaml:"dsn"`
	// PasswordFile holds the PostgreSQL password, read at start.
	PasswordFile string `yaml:"password_file"`
}

// Store drivers.
const (
	driverSQLite   = "sqlite"
	driverPostgres = "postgres"
)

// storePasswordEnv names the variable the PostgreSQL password may come from.
const storePasswordEnv = "SIGIL_STORE_PASSWORD"

func (c StoreConfig) postgres() bool { return c.Driver == driverPostgres }

// validate checks c, refusing a password in the DSN: sigil.yaml holds no
// secrets.
func (c StoreConfig) validate() error {
	switch c.Driver {
	case "", driverSQLite:
		if c.DSN != "" || c.PasswordFile != "" {
			return errors.New("store.dsn and store.password_file need store.driver: postgres")
		}
		return nil
	case driverPostgres:
	default:
		return fmt.Errorf("store.driver %q: want sqlite or postgres", c.Driver)
	}
	return checkDSN(c.DSN)
}

// checkDSN accepts a postgres:// URL without a password.
func checkDSN(dsn string) error {
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" && u.Query().Get("host") == "" {
		return errors.New("store.dsn: want a URL postgres://user@host:port/database")
	}
	if _, ok := u.User.Password(); ok || u.Query().Has("password") {
		return fmt.Errorf("store.dsn must not hold the password: set %s or store.password_file", storePasswordEnv)
	}
	return nil
}

// storeFlag applies --store to c: a postgres:// URL selects PostgreSQL.
func storeFlag(c *StoreConfig, value string) error {
	if value == "" {
		return nil
	}
	if value == driverSQLite {
		*c = StoreConfig{}
		return nil
	}
	if err := checkDSN(value); err != nil {
		return fmt.Errorf("--store: %w", err)
	}
	c.Driver, c.DSN = driverPostgres, value
	return nil
}

// storePassword returns the PostgreSQL password from the environment or
// the password file; "" leaves it to the DSN's passfile.
func storePassword(c StoreConfig) (string, error) {
	if v := os.Getenv(storePasswordEnv); v != "" {
		return v, nil
	}
	if c.PasswordFile == "" {
		return "", nil
	}
	b, err := os.ReadFile(c.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("store.password_file: %w", err)
	}
	p := strings.TrimRight(string(b), "\r\n")
	if p == "" {
		return "", fmt.Errorf("store.password_file %s is empty", c.PasswordFile)
	}
	return p, nil
}

// backend is what cmd/sigil holds of a store: the whole contract, the
// checkpoint signer it installs, and the scans start-up verification reads.
type backend interface {
	store.Store
	SetCheckpointer(store.Checkpointer)
	ScanAuditFrom(ctx context.Context, from int64, fn func(audit.Event) error) error
}

// openStore opens the store cfg names, migrating it.
func openStore(ctx context.Context, cfg *Config, clk clockwork.Clock, log *slog.Logger, onCommit func(time.Duration, int)) (backend, error) {
	if cfg.Store.postgres() {
		pw, err := storePassword(cfg.Store)
		if err != nil {
			return nil, err
		}
		s, err := postgres.Open(ctx, postgres.Config{DSN: cfg.Store.DSN, Password: pw, Clock: clk, Logger: log, OnCommit: onCommit})
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	s, err := store.Open(ctx, store.Config{Path: cfg.DatabasePath(), Clock: clk, Logger: log, OnCommit: onCommit})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// StoreName names the store in audit events and messages: the SQLite
// file, or the PostgreSQL DSN (which holds no password).
func (c *Config) StoreName() string {
	if c.Store.postgres() {
		return c.Store.DSN
	}
	return c.DatabasePath()
}

// verifiedStore is what offline verification reads.
type verifiedStore interface {
	store.Store
	ScanAuditFrom(ctx context.Context, from int64, fn func(audit.Event) error) error
	ScanAllCertificates(ctx context.Context, fn func(store.CertRecord) error) error
	BlockedKeys(ctx context.Context) ([]store.BlockedKey, error)
}

// openVerified opens the SQLite file path read-only, or the PostgreSQL
// store dsn, for sigil audit verify.
func openVerified(ctx context.Context, path, dsn string) (verifiedStore, error) {
	if dsn == "" {
		s, err := store.OpenReadOnly(ctx, path)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	var c StoreConfig
	if err := storeFlag(&c, dsn); err != nil {
		return nil, err
	}
	pw, err := storePassword(c)
	if err != nil {
		return nil, err
	}
	// Open migrates a database behind this build's schema; one that is
	// current (what a serving CA's is) it only reads.
	s, err := postgres.Open(ctx, postgres.Config{DSN: c.DSN, Password: pw, Clock: clockwork.NewRealClock(), MaxConns: 2})
	if err != nil {
		return nil, err
	}
	return s, nil
}
