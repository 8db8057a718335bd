// Package testhsm gives a test its own SoftHSM 2 token: a fresh token
// directory and configuration file, a token initialised with random PINs, and
// the user PIN in a file for the pkcs11 URI's pin-source.
//
// Where SoftHSM is not installed the test is skipped with a message saying
// how to install it, unless SIGIL_REQUIRE_HSM=1 (set by .ci/run), where it
// fails instead: CI must never pass by skipping.
package testhsm

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// RequireEnv names the variable that turns a missing SoftHSM into a failure.
const RequireEnv = "SIGIL_REQUIRE_HSM"

// ConfEnv is the variable SoftHSM reads its configuration path from.
const ConfEnv = "SOFTHSM2_CONF"

// modulePaths are where Debian and other distributions install the module.
var modulePaths = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
}

// Token is an initialised SoftHSM token that only one test uses.
type Token struct {
	Label      string // CKA_LABEL of the token
	ModulePath string // the PKCS#11 module to load
	PINFile    string // file holding the user PIN (mode 0600)
	Dir        string // the token directory
	pin        string
}

// PIN returns the user PIN, for tests that must give it another way (an
// environment variable) or check that it never leaks.
func (tk *Token) PIN() string { return tk.pin }

// Module returns the path of the SoftHSM module, skipping (or failing under
// SIGIL_REQUIRE_HSM=1) when SoftHSM is not installed.
func Module(t testing.TB) string {
	t.Helper()
	for _, p := range modulePaths {
		if _, err := os.Stat(p); err == nil {
			if _, err := exec.LookPath("softhsm2-util"); err == nil {
				return p
			}
		}
	}
	msg := "SoftHSM 2 is not installed (apt-get install softhsm2): PKCS#11 tests skipped"
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("%s=1 but %s", RequireEnv, msg)
	}
	t.Skip(msg)
	return ""
}

// New initialises a token labelled label in a directory of its own and
// points SOFTHSM2_CONF at it for the rest of the test (so the test cannot be
// parallel: SoftHSM reads the variable when the module is initialised, and a
// module stays initialised while any PKCS#11 context in the process is open).
// The SO and user PINs are random.
func New(t testing.TB, label string) *Token {
	t.Helper()
	module := Module(t)
	// Not t.TempDir: its name comes from the test's, and SoftHSM's
	// configuration parser cuts a path at '=' (as in "max-sessions=2").
	dir, err := os.MkdirTemp("", "sigil-softhsm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	body := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n", tokens)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(ConfEnv, conf)

	pin, soPIN := randomPIN(t), randomPIN(t)
	cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", soPIN, "--pin", pin)
	cmd.Env = append(os.Environ(), ConfEnv+"="+conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util --init-token --label %s: %v\n%s", label, err, out)
	}
	pinFile := filepath.Join(dir, "user.pin")
	if err := os.WriteFile(pinFile, []byte(pin), 0o600); err != nil {
		t.Fatal(err)
	}
	return &Token{Label: label, ModulePath: module, PINFile: pinFile, Dir: tokens, pin: pin}
}

// URI returns a pkcs11 key URI for object on this token, with the PIN read
// from the token's PIN file.
func (tk *Token) URI(object string) string {
	return fmt.Sprintf("pkcs11:module-path=%s;token=%s;object=%s?pin-source=%s", tk.ModulePath, tk.Label, object, tk.PINFile)
}

func randomPIN(t testing.TB) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
