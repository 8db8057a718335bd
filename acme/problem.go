package acme

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/sigil-ca/sigil/ca"
)

// ACME error types: RFC 8555 §6.7, plus alreadyReplaced (RFC 9773, ACME
// Renewal Information) and invalidProfile (the ACME profiles extension).
// A Problem's Type is one of these.
const (
	TypeAccountDoesNotExist     = "urn:ietf:params:acme:error:accountDoesNotExist"
	TypeAlreadyReplaced         = "urn:ietf:params:acme:error:alreadyReplaced"
	TypeAlreadyRevoked          = "urn:ietf:params:acme:error:alreadyRevoked"
	TypeBadCSR                  = "urn:ietf:params:acme:error:badCSR"
	TypeBadNonce                = "urn:ietf:params:acme:error:badNonce"
	TypeBadPublicKey            = "urn:ietf:params:acme:error:badPublicKey"
	TypeBadRevocationReason     = "urn:ietf:params:acme:error:badRevocationReason"
	TypeBadSignatureAlgorithm   = "urn:ietf:params:acme:error:badSignatureAlgorithm"
	TypeCAA                     = "urn:ietf:params:acme:error:caa"
	TypeCompound                = "urn:ietf:params:acme:error:compound"
	TypeConnection              = "urn:ietf:params:acme:error:connection"
	TypeDNS                     = "urn:ietf:params:acme:error:dns"
	TypeExternalAccountRequired = "urn:ietf:params:acme:error:externalAccountRequired"
	TypeIncorrectResponse       = "urn:ietf:params:acme:error:incorrectResponse"
	TypeInvalidContact          = "urn:ietf:params:acme:error:invalidContact"
	TypeInvalidProfile          = "urn:ietf:params:acme:error:invalidProfile"
	TypeMalformed               = "urn:ietf:params:acme:error:malformed"
	TypeOrderNotReady           = "urn:ietf:params:acme:error:orderNotReady"
	TypeRateLimited             = "urn:ietf:params:acme:error:rateLimited"
	TypeRejectedIdentifier      = "urn:ietf:params:acme:error:rejectedIdentifier"
	TypeServerInternal          = "urn:ietf:params:acme:error:serverInternal"
	TypeTLS                     = "urn:ietf:params:acme:error:tls"
	TypeUnauthorized            = "urn:ietf:params:acme:error:unauthorized"
	TypeUnsupportedContact      = "urn:ietf:params:acme:error:unsupportedContact"
	TypeUnsupportedIdentifier   = "urn:ietf:params:acme:error:unsupportedIdentifier"
	TypeUserActionRequired      = "urn:ietf:params:acme:error:userActionRequired"
)

// Problem is an RFC 7807 problem document (RFC 8555 §6.7). It is also an
// error: handlers return it and the adapter renders it with Write.
type Problem struct {
	Type   string `json:"type"`
	Detail string `json:"detail,omitempty"`
	// Status is the HTTP status. It is omitted from subproblems that leave
	// it zero; Write always sends a non-zero one.
	Status      int         `json:"status,omitempty"`
	Identifier  *Identifier `json:"identifier,omitempty"`
	Subproblems []Problem   `json:"subproblems,omitempty"`
	// Algorithms lists the supported "alg" values; RFC 8555 §6.2 requires it
	// on badSignatureAlgorithm.
	Algorithms []string `json:"algorithms,omitempty"`
	// RetryAfter, when positive, is sent as the Retry-After header.
	RetryAfter time.Duration `json:"-"`
}

// Identifier is an ACME identifier (RFC 8555 §9.7.7): Type "dns" or "ip"
// (RFC 8738).
type Identifier struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// Error returns the type and detail, e.g. "malformed: no such order".
func (p *Problem) Error() string {
	short := strings.TrimPrefix(p.Type, "urn:ietf:params:acme:error:")
	if p.Detail == "" {
		return short
	}
	return short + ": " + p.Detail
}

// WithStatus sets the HTTP status (e.g. malformed with 404 for an unknown
// resource, 405, 409, 413, 415) and returns p.
func (p *Problem) WithStatus(status int) *Problem {
	p.Status = status
	return p
}

// WithRetryAfter sets the Retry-After delay and returns p.
func (p *Problem) WithRetryAfter(d time.Duration) *Problem {
	p.RetryAfter = d
	return p
}

// Write renders p as application/problem+json with its status (the type's
// default when zero) and, when RetryAfter is positive, a Retry-After header
// in whole seconds, rounded up.
func (p *Problem) Write(w http.ResponseWriter) {
	doc := *p
	if doc.Status == 0 {
		doc.Status = defaultStatus(doc.Type)
	}
	body, err := json.Marshal(doc)
	if err != nil {
		// Unreachable for this type; never send a half-built document.
		doc = Problem{Type: TypeServerInternal, Detail: "internal error", Status: http.StatusInternalServerError}
		body, _ = json.Marshal(doc)
	}
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	if p.RetryAfter > 0 {
		secs := (p.RetryAfter + time.Second - 1) / time.Second
		h.Set("Retry-After", strconv.FormatInt(int64(secs), 10))
	}
	w.WriteHeader(doc.Status)
	_, _ = w.Write(append(body, '\n'))
}

// defaultStatus is the HTTP status each type is sent with unless a caller
// overrides it; the conventions are Boulder's and Pebble's.
func defaultStatus(typ string) int {
	switch typ {
	case TypeUnauthorized, TypeCAA, TypeOrderNotReady, TypeUserActionRequired,
		TypeExternalAccountRequired, TypeIncorrectResponse:
		return http.StatusForbidden
	case TypeRateLimited:
		return http.StatusTooManyRequests
	case TypeAlreadyReplaced:
		return http.StatusConflict
	case TypeServerInternal, "":
		return http.StatusInternalServerError
	}
	return http.StatusBadRequest
}

func newProblem(typ, detail string) *Problem {
	return &Problem{Type: typ, Detail: detail, Status: defaultStatus(typ)}
}

// Malformed returns a malformed problem (400) with a formatted detail.
func Malformed(format string, args ...any) *Problem {
	return newProblem(TypeMalformed, fmt.Sprintf(format, args...))
}

// AccountDoesNotExist returns an accountDoesNotExist problem (400).
func AccountDoesNotExist(detail string) *Problem {
	return newProblem(TypeAccountDoesNotExist, detail)
}

// AlreadyReplaced returns an alreadyReplaced problem (409, RFC 9773):
// the certificate named in "replaces" already has a successor order.
func AlreadyReplaced(detail string) *Problem { return newProblem(TypeAlreadyReplaced, detail) }

// AlreadyRevoked returns an alreadyRevoked problem (400).
func AlreadyRevoked(detail string) *Problem { return newProblem(TypeAlreadyRevoked, detail) }

// BadCSR returns a badCSR problem (400).
func BadCSR(detail string) *Problem { return newProblem(TypeBadCSR, detail) }

// BadNonce returns a badNonce problem (400).
func BadNonce(detail string) *Problem { return newProblem(TypeBadNonce, detail) }

// BadPublicKey returns a badPublicKey problem (400).
func BadPublicKey(detail string) *Problem { return newProblem(TypeBadPublicKey, detail) }

// BadRevocationReason returns a badRevocationReason problem (400).
func BadRevocationReason(detail string) *Problem {
	return newProblem(TypeBadRevocationReason, detail)
}

// BadSignatureAlgorithm returns a badSignatureAlgorithm problem (400)
// listing the supported algorithms, as RFC 8555 §6.2 requires.
func BadSignatureAlgorithm(detail string, supported ...string) *Problem {
	p := newProblem(TypeBadSignatureAlgorithm, detail)
	p.Algorithms = supported
	return p
}

// CAA returns a caa problem (403).
func CAA(detail string) *Problem { return newProblem(TypeCAA, detail) }

// Compound returns a compound problem (400) whose per-identifier causes are
// subs.
func Compound(detail string, subs ...Problem) *Problem {
	p := newProblem(TypeCompound, detail)
	p.Subproblems = subs
	return p
}

// Connection returns a connection problem (400).
func Connection(detail string) *Problem { return newProblem(TypeConnection, detail) }

// DNS returns a dns problem (400).
func DNS(detail string) *Problem { return newProblem(TypeDNS, detail) }

// ExternalAccountRequired returns an externalAccountRequired problem (403).
func ExternalAccountRequired(detail string) *Problem {
	return newProblem(TypeExternalAccountRequired, detail)
}

// IncorrectResponse returns an incorrectResponse problem (403).
func IncorrectResponse(detail string) *Problem { return newProblem(TypeIncorrectResponse, detail) }

// InvalidContact returns an invalidContact problem (400).
func InvalidContact(detail string) *Problem { return newProblem(TypeInvalidContact, detail) }

// InvalidProfile returns an invalidProfile problem (400, ACME profiles
// extension): the newOrder "profile" is not offered.
func InvalidProfile(detail string) *Problem { return newProblem(TypeInvalidProfile, detail) }

// OrderNotReady returns an orderNotReady problem (403).
func OrderNotReady(detail string) *Problem { return newProblem(TypeOrderNotReady, detail) }

// RateLimited returns a rateLimited problem (429) with a Retry-After delay
// (none when retryAfter is not positive).
func RateLimited(detail string, retryAfter time.Duration) *Problem {
	p := newProblem(TypeRateLimited, detail)
	p.RetryAfter = retryAfter
	return p
}

// RejectedIdentifier returns a rejectedIdentifier problem (400).
func RejectedIdentifier(detail string) *Problem {
	return newProblem(TypeRejectedIdentifier, detail)
}

// ServerInternal returns a serverInternal problem (500). The detail is sent
// to the client: never put a cause in it.
func ServerInternal(detail string) *Problem { return newProblem(TypeServerInternal, detail) }

// TLS returns a tls problem (400).
func TLS(detail string) *Problem { return newProblem(TypeTLS, detail) }

// Unauthorized returns an unauthorized problem (403).
func Unauthorized(detail string) *Problem { return newProblem(TypeUnauthorized, detail) }

// UnsupportedContact returns an unsupportedContact problem (400).
func UnsupportedContact(detail string) *Problem {
	return newProblem(TypeUnsupportedContact, detail)
}

// UnsupportedIdentifier returns an unsupportedIdentifier problem (400).
func UnsupportedIdentifier(detail string) *Problem {
	return newProblem(TypeUnsupportedIdentifier, detail)
}

// UserActionRequired returns a userActionRequired problem (403).
func UserActionRequired(detail string) *Problem {
	return newProblem(TypeUserActionRequired, detail)
}

// kindProblem is the one table from ca.Kind to an ACME type and status.
// ok is false for a kind it does not know, which FromError treats as
// Internal; the test fails when ca grows a kind this table lacks.
func kindProblem(k ca.Kind) (typ string, status int, ok bool) {
	switch k {
	case ca.Internal:
		return TypeServerInternal, http.StatusInternalServerError, true
	case ca.NotFound:
		return TypeMalformed, http.StatusNotFound, true
	case ca.Malformed:
		return TypeMalformed, http.StatusBadRequest, true
	case ca.Unauthorized:
		return TypeUnauthorized, http.StatusForbidden, true
	case ca.Forbidden:
		return TypeUnauthorized, http.StatusForbidden, true
	case ca.RateLimited:
		return TypeRateLimited, http.StatusTooManyRequests, true
	case ca.BadCSR:
		return TypeBadCSR, http.StatusBadRequest, true
	case ca.Rejected:
		return TypeRejectedIdentifier, http.StatusBadRequest, true
	case ca.Conflict:
		return TypeMalformed, http.StatusConflict, true
	case ca.Unavailable:
		return TypeServerInternal, http.StatusServiceUnavailable, true
	case ca.TooLarge:
		return TypeMalformed, http.StatusRequestEntityTooLarge, true
	}
	return "", 0, false
}

// internalDetail is all a client learns of an internal error; the cause is
// logged by the adapter, never sent (STYLE.md Errors).
const internalDetail = "internal error"

// FromError maps any error to the problem document sent for it: a *Problem
// anywhere in the chain is returned as is (its status filled in if zero); a
// *ca.Error is mapped by Kind, with its Sub as subproblems and its
// RetryAfter kept; anything else, and every Internal error, becomes
// serverInternal 500 "internal error" with no cause. FromError(nil) is nil.
func FromError(err error) *Problem {
	if err == nil {
		return nil
	}
	var p *Problem
	if errors.As(err, &p) && p != nil {
		if p.Status == 0 {
			cp := *p
			cp.Status = defaultStatus(cp.Type)
			return &cp
		}
		return p
	}
	var e *ca.Error
	if !errors.As(err, &e) || e == nil {
		return ServerInternal(internalDetail)
	}
	typ, status, ok := kindProblem(e.Kind)
	if !ok || e.Kind == ca.Internal {
		return ServerInternal(internalDetail)
	}
	out := &Problem{Type: typ, Status: status, Detail: e.Detail, RetryAfter: e.RetryAfter}
	if out.Detail == "" {
		out.Detail = strings.ToLower(http.StatusText(status))
	}
	for _, s := range e.Sub {
		out.Subproblems = append(out.Subproblems, subproblem(s))
	}
	return out
}

// subproblem maps one per-identifier error (RFC 8555 §6.7.1).
func subproblem(s ca.SubError) Problem {
	typ, status, ok := kindProblem(s.Kind)
	detail := s.Detail
	if !ok || s.Kind == ca.Internal {
		typ, status, detail = TypeServerInternal, http.StatusInternalServerError, internalDetail
	}
	sub := Problem{Type: typ, Status: status, Detail: detail}
	if s.Identifier != "" {
		sub.Identifier = identifierOf(s.Identifier)
	}
	return sub
}

// identifierOf types an identifier string: an IP literal is "ip" (RFC
// 8738), anything else "dns".
func identifierOf(v string) *Identifier {
	if _, err := netip.ParseAddr(v); err == nil {
		return &Identifier{Type: "ip", Value: v}
	}
	return &Identifier{Type: "dns", Value: v}
}
