package testhsm

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

func TestNewInitialisesAToken(t *testing.T) {
	tk := New(t, "helper-check")
	fi, err := os.Stat(tk.PINFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("PIN file mode %v, want 0600", fi.Mode().Perm())
	}
	if got := os.Getenv(ConfEnv); !strings.HasPrefix(got, strings.TrimSuffix(tk.Dir, "/tokens")) {
		t.Errorf("%s=%q, not inside the test's directory %s", ConfEnv, got, tk.Dir)
	}
	out, err := exec.Command("softhsm2-util", "--show-slots").CombinedOutput()
	if err != nil {
		t.Fatalf("softhsm2-util --show-slots: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "helper-check") {
		t.Errorf("token not listed:\n%s", out)
	}
	if strings.Contains(string(out), tk.PIN()) {
		t.Error("the PIN appears in softhsm2-util's output")
	}
}

func TestTokensAreSeparate(t *testing.T) {
	a := New(t, "first")
	b := New(t, "second")
	if a.Dir == b.Dir || a.PIN() == b.PIN() {
		t.Errorf("two tokens share a directory or a PIN")
	}
	out, err := exec.Command("softhsm2-util", "--show-slots").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	// SOFTHSM2_CONF now points at the second token's directory only.
	if !regexp.MustCompile(`Label:\s+second\s`).Match(out) {
		t.Fatalf("the second token is not listed:\n%s", out)
	}
	if regexp.MustCompile(`Label:\s+first\s`).Match(out) {
		t.Errorf("the first token is visible through the second's configuration:\n%s", out)
	}
}
