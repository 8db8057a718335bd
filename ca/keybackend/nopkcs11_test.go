//go:build !cgo || nopkcs11

package keybackend

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestPKCS11NotBuilt checks that a binary without cgo says so clearly.
func TestPKCS11NotBuilt(t *testing.T) {
	u, err := ParseURI("pkcs11:module-path=/usr/lib/softhsm/libsofthsm2.so;token=root;object=k")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(context.Background(), u, Config{PIN: []byte("x")})
	if !errors.Is(err, ErrPKCS11NotBuilt) || !strings.Contains(err.Error(), "CGO_ENABLED=1") {
		t.Fatalf("open without cgo: %v", err)
	}
}
