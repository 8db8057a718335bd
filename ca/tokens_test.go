package ca

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/ca/keystore"
)

func TestTokens(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tc := newTestCA(t, keystore.ECDSAP256, keystore.ECDSAP256)

	secret, rec, err := tc.Access().CreateToken(ctx, "cli", RoleIssuer, []string{"tls-server"}, 2*time.Hour, "web fleet")
	if err != nil {
		t.Fatalf("CreateToken: %v", err)
	}
	if !strings.HasPrefix(secret, "sigil_"+rec.ID+"_") {
		t.Errorf("secret %q does not read sigil_<id>_<secret>", secret)
	}
	p, err := tc.Access().Authenticate(ctx, secret)
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	if p.TokenID != rec.ID || p.Role != RoleIssuer || !slices.Equal(p.Profiles, []string{"tls-server"}) || p.Actor() != "token:"+rec.ID {
		t.Errorf("principal = %+v", p)
	}
	if strings.Contains(p.String(), secret[len("sigil_")+17:]) {
		t.Errorf("Principal.String leaks the secret: %s", p)
	}

	// Only a SHA-256 of the secret part is stored.
	stored, err := tc.st.Token(ctx, rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	secretPart := secret[len("sigil_"+rec.ID+"_"):]
	sum := sha256.Sum256([]byte(secretPart))
	if !bytes.Equal(stored.SecretHash, sum[:]) {
		t.Errorf("stored hash %x, want SHA-256 of the secret %x", stored.SecretHash, sum)
	}
	all, err := tc.Access().Tokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range all {
		for _, field := range []string{string(r.SecretHash), r.Description, r.ID, strings.Join(r.Profiles, ",")} {
			if strings.Contains(field, secretPart) {
				t.Errorf("token record %s holds the secret", r.ID)
			}
		}
	}
	if len(all) != 2 { // the init admin token and ours
		t.Errorf("%d tokens, want 2", len(all))
	}

	// The init admin token works too.
	if p, err := tc.Access().Authenticate(ctx, tc.init.AdminToken); err != nil || p.Role != RoleAdmin {
		t.Errorf("admin token: %+v, %v", p, err)
	}

	otherSecret, _, err := NewToken(RoleAdmin, nil, 0, "never stored", tc.clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	flip := []byte(secret)
	if flip[len(flip)-1] == 'A' {
		flip[len(flip)-1] = 'B'
	} else {
		flip[len(flip)-1] = 'A'
	}
	idOf := func(s string) string { return s[len("sigil_") : len("sigil_")+16] }
	denied := []struct{ name, token string }{
		{"wrong secret", string(flip)},
		{"secret of another token", "sigil_" + rec.ID + "_" + otherSecret[len("sigil_")+17:]},
		{"unknown id", otherSecret},
		{"unknown id with a real secret", "sigil_" + idOf(otherSecret) + "_" + secretPart},
		{"empty", ""},
		{"prefix only", "sigil_"},
		{"no prefix", secret[len("sigil_"):]},
		{"bearer", "Bearer " + secret},
		{"short id", "sigil_abcd_" + secretPart},
		{"no secret", "sigil_" + rec.ID + "_"},
		{"no separator", "sigil_" + rec.ID},
		{"trailing space", secret + " "},
		{"hash instead of secret", "sigil_" + rec.ID + "_" + fmt.Sprintf("%x", sum)},
	}
	for _, d := range denied {
		t.Run(d.name, func(t *testing.T) {
			_, err := tc.Access().Authenticate(ctx, d.token)
			assertUnauthorized(t, err)
		})
	}

	// Revoked.
	rsecret, rrec, err := tc.Access().CreateToken(ctx, "cli", RoleAuditor, nil, 0, "to revoke")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tc.Access().Authenticate(ctx, rsecret); err != nil {
		t.Fatalf("before revocation: %v", err)
	}
	if err := tc.Access().RevokeToken(ctx, "cli", rrec.ID); err != nil {
		t.Fatalf("RevokeToken: %v", err)
	}
	_, err = tc.Access().Authenticate(ctx, rsecret)
	assertUnauthorized(t, err)
	if err := tc.Access().RevokeToken(ctx, "cli", rrec.ID); KindOf(err) != NotFound {
		t.Errorf("second RevokeToken = %v, want not_found", err)
	}

	// Expiry: valid until just before Expires, refused from then on.
	tc.clk.Advance(2*time.Hour - time.Second)
	if _, err := tc.Access().Authenticate(ctx, secret); err != nil {
		t.Errorf("1s before expiry: %v", err)
	}
	tc.clk.Advance(time.Second)
	_, err = tc.Access().Authenticate(ctx, secret)
	assertUnauthorized(t, err)
	// A token without ttl does not expire.
	if _, err := tc.Access().Authenticate(ctx, tc.init.AdminToken); err != nil {
		t.Errorf("admin token after 2h: %v", err)
	}
}

func assertUnauthorized(t *testing.T, err error) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || e.Kind != Unauthorized {
		t.Fatalf("Authenticate = %v, want unauthorized", err)
	}
	if e.Detail != "invalid or expired token" {
		t.Errorf("detail %q reveals which check failed", e.Detail)
	}
}

func TestNewTokenRefusals(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		role     string
		profiles []string
		ttl      time.Duration
		detail   string
	}{
		{"unknown role", "root", nil, 0, `unknown role "root"`},
		{"issuer without profiles", RoleIssuer, nil, 0, "needs at least one profile"},
		{"admin with profiles", RoleAdmin, []string{"tls-server"}, 0, "profiles apply only to issuer tokens"},
		{"negative ttl", RoleAdmin, nil, -time.Second, "negative ttl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := NewToken(tt.role, tt.profiles, tt.ttl, "", now)
			var e *Error
			if !errors.As(err, &e) || e.Kind != Malformed || !strings.Contains(e.Detail, tt.detail) {
				t.Errorf("NewToken = %v, want malformed %q", err, tt.detail)
			}
		})
	}
	t.Run("CreateToken unknown profile", func(t *testing.T) {
		t.Parallel()
		tc := newTestCA(t, keystore.ECDSAP256, keystore.ECDSAP256)
		_, _, err := tc.Access().CreateToken(context.Background(), "cli", RoleIssuer, []string{"nope"}, 0, "")
		if KindOf(err) != Malformed {
			t.Errorf("CreateToken = %v, want malformed", err)
		}
	})
}
