package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/term"
)

// passphraseSource says where a passphrase comes from: a file, an
// environment variable, or a prompt on the terminal. Never a flag value or
// the config file.
type passphraseSource struct {
	file   string // --passphrase-file
	envVar string // e.g. SIGIL_PASSPHRASE
	prompt string
}

// read returns the passphrase; confirm asks twice on a terminal.
func (s passphraseSource) read(confirm bool) ([]byte, error) {
	if s.file != "" {
		b, err := os.ReadFile(s.file)
		if err != nil {
			return nil, fmt.Errorf("read passphrase file: %w", err)
		}
		b = bytes.TrimRight(b, "\r\n")
		if len(b) == 0 {
			return nil, fmt.Errorf("passphrase file %s is empty", s.file)
		}
		return b, nil
	}
	if v, ok := os.LookupEnv(s.envVar); ok && v != "" {
		return []byte(v), nil
	}
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return nil, fmt.Errorf("no passphrase: use --passphrase-file, set %s, or run on a terminal", s.envVar)
	}
	fmt.Fprint(os.Stderr, s.prompt+": ")
	p, err := term.ReadPassword(fd)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return nil, fmt.Errorf("read passphrase: %w", err)
	}
	if confirm {
		fmt.Fprint(os.Stderr, "Repeat: ")
		q, err := term.ReadPassword(fd)
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return nil, fmt.Errorf("read passphrase: %w", err)
		}
		if !bytes.Equal(p, q) {
			return nil, errors.New("passphrases do not match")
		}
	}
	if len(strings.TrimSpace(string(p))) == 0 {
		return nil, errors.New("empty passphrase")
	}
	return p, nil
}

func checkNewPassphrase(p []byte) error {
	if len(p) < 12 {
		return errors.New("the passphrase must be at least 12 characters")
	}
	return nil
}
