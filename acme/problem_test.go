package acme

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/ca"
)

func TestFromErrorKinds(t *testing.T) {
	t.Parallel()
	want := map[ca.Kind]struct {
		typ    string
		status int
	}{
		ca.Internal:     {TypeServerInternal, 500},
		ca.NotFound:     {TypeMalformed, 404},
		ca.Malformed:    {TypeMalformed, 400},
		ca.Unauthorized: {TypeUnauthorized, 403},
		ca.Forbidden:    {TypeUnauthorized, 403},
		ca.RateLimited:  {TypeRateLimited, 429},
		ca.BadCSR:       {TypeBadCSR, 400},
		ca.Rejected:     {TypeRejectedIdentifier, 400},
		ca.Conflict:     {TypeMalformed, 409},
		ca.Unavailable:  {TypeServerInternal, 503},
		ca.TooLarge:     {TypeMalformed, 413},
	}
	// Walk every kind ca knows: up to TooLarge, and on while String names
	// the kind, so a kind added to ca without a row here fails.
	for k := ca.Internal; k <= ca.TooLarge || k.String() != fmt.Sprintf("kind(%d)", int(k)); k++ {
		t.Run(k.String(), func(t *testing.T) {
			t.Parallel()
			w, ok := want[k]
			if !ok {
				t.Fatalf("ca.Kind %v has no expected ACME mapping in this test", k)
			}
			if _, _, mapped := kindProblem(k); !mapped {
				t.Fatalf("ca.Kind %v is not in the kindProblem table", k)
			}
			err := fmt.Errorf("handler: %w", &ca.Error{Kind: k, Detail: "the detail", Err: errors.New("secret cause")})
			p := FromError(err)
			if p.Type != w.typ || p.Status != w.status {
				t.Errorf("FromError(%v) = %s %d, want %s %d", k, p.Type, p.Status, w.typ, w.status)
			}
			wantDetail := "the detail"
			if k == ca.Internal {
				wantDetail = "internal error"
			}
			if p.Detail != wantDetail {
				t.Errorf("detail = %q, want %q", p.Detail, wantDetail)
			}
		})
	}
}

func TestFromError(t *testing.T) {
	t.Parallel()
	bad := BadNonce("stale")
	tests := []struct {
		name string
		err  error
		want *Problem
	}{
		{"nil", nil, nil},
		{"problem passes through", bad, bad},
		{"wrapped problem passes through", fmt.Errorf("read post: %w", bad), bad},
		{"problem without status gets its type's", &Problem{Type: TypeOrderNotReady, Detail: "x"},
			&Problem{Type: TypeOrderNotReady, Detail: "x", Status: 403}},
		{"untyped error", errors.New("disk on fire at /var/lib/sigil"),
			&Problem{Type: TypeServerInternal, Detail: "internal error", Status: 500}},
		{"internal never leaks", &ca.Error{Kind: ca.Internal, Detail: "sign leaf: hsm slot 3", Err: errors.New("pkcs11: CKR_PIN_INCORRECT"),
			Sub: []ca.SubError{{Identifier: "a.test", Kind: ca.Rejected, Detail: "x"}}},
			&Problem{Type: TypeServerInternal, Detail: "internal error", Status: 500}},
		{"unknown kind is internal", &ca.Error{Kind: ca.Kind(1000), Detail: "?"},
			&Problem{Type: TypeServerInternal, Detail: "internal error", Status: 500}},
		{"rate limited keeps retry-after", &ca.Error{Kind: ca.RateLimited, Detail: "too many orders", RetryAfter: 90 * time.Second},
			&Problem{Type: TypeRateLimited, Detail: "too many orders", Status: 429, RetryAfter: 90 * time.Second}},
		{"unavailable without detail", &ca.Error{Kind: ca.Unavailable},
			&Problem{Type: TypeServerInternal, Detail: "service unavailable", Status: 503}},
		{"rejected with subproblems", &ca.Error{Kind: ca.Rejected, Detail: "2 identifiers refused", Sub: []ca.SubError{
			{Identifier: "evil.test", Kind: ca.Rejected, Detail: "not allowed by policy"},
			{Identifier: "192.0.2.7", Kind: ca.Rejected, Detail: "IP not allowed"},
			{Identifier: "2001:db8::1", Kind: ca.Malformed, Detail: "bad"},
			{Identifier: "*.wild.test", Kind: ca.BadCSR, Detail: "csr"},
			{Identifier: "x.test", Kind: ca.Internal, Detail: "db row 7 corrupt"},
			{Kind: ca.Rejected, Detail: "no identifier"},
		}}, &Problem{Type: TypeRejectedIdentifier, Detail: "2 identifiers refused", Status: 400, Subproblems: []Problem{
			{Type: TypeRejectedIdentifier, Detail: "not allowed by policy", Status: 400, Identifier: &Identifier{Type: "dns", Value: "evil.test"}},
			{Type: TypeRejectedIdentifier, Detail: "IP not allowed", Status: 400, Identifier: &Identifier{Type: "ip", Value: "192.0.2.7"}},
			{Type: TypeMalformed, Detail: "bad", Status: 400, Identifier: &Identifier{Type: "ip", Value: "2001:db8::1"}},
			{Type: TypeBadCSR, Detail: "csr", Status: 400, Identifier: &Identifier{Type: "dns", Value: "*.wild.test"}},
			{Type: TypeServerInternal, Detail: "internal error", Status: 500, Identifier: &Identifier{Type: "dns", Value: "x.test"}},
			{Type: TypeRejectedIdentifier, Detail: "no identifier", Status: 400},
		}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := FromError(tc.err)
			if !reflect.DeepEqual(got, tc.want) {
				gj, _ := json.Marshal(got)
				wj, _ := json.Marshal(tc.want)
				t.Errorf("FromError = %s (retry %v)\nwant %s (retry %v)", gj, retryOf(got), wj, retryOf(tc.want))
			}
			if got != nil {
				for _, secret := range []string{"hsm", "pkcs11", "PIN", "disk", "row 7"} {
					if b, _ := json.Marshal(got); strings.Contains(string(b), secret) {
						t.Errorf("problem leaks %q: %s", secret, b)
					}
				}
			}
		})
	}
}

func retryOf(p *Problem) time.Duration {
	if p == nil {
		return 0
	}
	return p.RetryAfter
}

func TestProblemWrite(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		p          *Problem
		status     int
		retryAfter string
		body       map[string]any
	}{
		{"bad nonce", BadNonce("stale nonce"), 400, "",
			map[string]any{"type": TypeBadNonce, "detail": "stale nonce", "status": 400.0}},
		{"retry-after rounds up", RateLimited("slow down", 1500*time.Millisecond), 429, "2",
			map[string]any{"type": TypeRateLimited, "detail": "slow down", "status": 429.0}},
		{"retry-after whole seconds", FromError(&ca.Error{Kind: ca.RateLimited, Detail: "d", RetryAfter: time.Minute}), 429, "60",
			map[string]any{"type": TypeRateLimited, "detail": "d", "status": 429.0}},
		{"retry-after on any problem", ServerInternal("maintenance").WithStatus(503).WithRetryAfter(time.Nanosecond), 503, "1",
			map[string]any{"type": TypeServerInternal, "detail": "maintenance", "status": 503.0}},
		{"status override", Malformed("no such order").WithStatus(http.StatusNotFound), 404, "",
			map[string]any{"type": TypeMalformed, "detail": "no such order", "status": 404.0}},
		{"zero status gets the type's", &Problem{Type: TypeUnauthorized}, 403, "",
			map[string]any{"type": TypeUnauthorized, "status": 403.0}},
		{"algorithms and subproblems", &Problem{Type: TypeBadSignatureAlgorithm, Detail: "d", Status: 400, Algorithms: []string{"ES256"},
			Subproblems: []Problem{{Type: TypeCAA, Detail: "caa", Identifier: &Identifier{Type: "dns", Value: "a.test"}}}}, 400, "",
			map[string]any{"type": TypeBadSignatureAlgorithm, "detail": "d", "status": 400.0, "algorithms": []any{"ES256"},
				"subproblems": []any{map[string]any{"type": TypeCAA, "detail": "caa", "identifier": map[string]any{"type": "dns", "value": "a.test"}}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			tc.p.Write(rec)
			if rec.Code != tc.status {
				t.Errorf("status = %d, want %d", rec.Code, tc.status)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if ra := rec.Header().Get("Retry-After"); ra != tc.retryAfter {
				t.Errorf("Retry-After = %q, want %q", ra, tc.retryAfter)
			}
			var body map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", rec.Body, err)
			}
			if !reflect.DeepEqual(body, tc.body) {
				t.Errorf("body = %v\nwant %v", body, tc.body)
			}
		})
	}
}

func TestProblemConstructors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		p      *Problem
		typ    string
		status int
	}{
		{AccountDoesNotExist("d"), "accountDoesNotExist", 400},
		{AlreadyReplaced("d"), "alreadyReplaced", 409},
		{AlreadyRevoked("d"), "alreadyRevoked", 400},
		{BadCSR("d"), "badCSR", 400},
		{BadNonce("d"), "badNonce", 400},
		{BadPublicKey("d"), "badPublicKey", 400},
		{BadRevocationReason("d"), "badRevocationReason", 400},
		{BadSignatureAlgorithm("d", "ES256"), "badSignatureAlgorithm", 400},
		{CAA("d"), "caa", 403},
		{Compound("d", *CAA("x")), "compound", 400},
		{Connection("d"), "connection", 400},
		{DNS("d"), "dns", 400},
		{ExternalAccountRequired("d"), "externalAccountRequired", 403},
		{IncorrectResponse("d"), "incorrectResponse", 403},
		{InvalidContact("d"), "invalidContact", 400},
		{InvalidProfile("d"), "invalidProfile", 400},
		{Malformed("%s", "d"), "malformed", 400},
		{OrderNotReady("d"), "orderNotReady", 403},
		{RateLimited("d", time.Second), "rateLimited", 429},
		{RejectedIdentifier("d"), "rejectedIdentifier", 400},
		{ServerInternal("d"), "serverInternal", 500},
		{TLS("d"), "tls", 400},
		{Unauthorized("d"), "unauthorized", 403},
		{UnsupportedContact("d"), "unsupportedContact", 400},
		{UnsupportedIdentifier("d"), "unsupportedIdentifier", 400},
		{UserActionRequired("d"), "userActionRequired", 403},
	}
	for _, tc := range tests {
		t.Run(tc.typ, func(t *testing.T) {
			t.Parallel()
			if want := "urn:ietf:params:acme:error:" + tc.typ; tc.p.Type != want {
				t.Errorf("type = %q, want %q", tc.p.Type, want)
			}
			if tc.p.Status != tc.status {
				t.Errorf("status = %d, want %d", tc.p.Status, tc.status)
			}
			if tc.p.Detail != "d" {
				t.Errorf("detail = %q", tc.p.Detail)
			}
			if got, want := tc.p.Error(), tc.typ+": d"; got != want {
				t.Errorf("Error() = %q, want %q", got, want)
			}
			if defaultStatus(tc.p.Type) != tc.status {
				t.Errorf("defaultStatus(%s) = %d", tc.typ, defaultStatus(tc.p.Type))
			}
		})
	}
	if p := Compound("d", *CAA("x")); len(p.Subproblems) != 1 || p.Subproblems[0].Type != TypeCAA {
		t.Errorf("Compound subproblems = %+v", p.Subproblems)
	}
	if p := BadSignatureAlgorithm("d", "ES256", "EdDSA"); !reflect.DeepEqual(p.Algorithms, []string{"ES256", "EdDSA"}) {
		t.Errorf("algorithms = %v", p.Algorithms)
	}
	if p := RateLimited("d", 3*time.Second); p.RetryAfter != 3*time.Second {
		t.Errorf("RetryAfter = %v", p.RetryAfter)
	}
}
