package ca

import (
	"errors"
	"fmt"
	"time"
)

// Kind classifies an Error; each surface (the /v1 API, ACME) maps kinds to
// its own status codes in one table.
type Kind int

// Error kinds. The zero value is Internal so that an unclassified error never
// reads as a client fault.
const (
	Internal Kind = iota
	NotFound
	Malformed
	Unauthorized
	Forbidden
	RateLimited
	BadCSR
	Rejected
	Conflict
	Unavailable
	TooLarge
)

// String returns the kind's snake_case name.
func (k Kind) String() string {
	switch k {
	case Internal:
		return "internal"
	case NotFound:
		return "not_found"
	case Malformed:
		return "malformed"
	case Unauthorized:
		return "unauthorized"
	case Forbidden:
		return "forbidden"
	case RateLimited:
		return "rate_limited"
	case BadCSR:
		return "bad_csr"
	case Rejected:
		return "rejected"
	case Conflict:
		return "conflict"
	case Unavailable:
		return "unavailable"
	case TooLarge:
		return "too_large"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Error is the one error type the authority returns to its surfaces. Detail
// is safe to show to the caller; Err (if any) is internal and only logged.
type Error struct {
	Kind       Kind
	Detail     string
	Sub        []SubError
	RetryAfter time.Duration
	Err        error
}

// SubError is a per-identifier problem, as ACME subproblems need.
type SubError struct {
	Identifier string
	Kind       Kind
	Detail     string
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Kind, e.Detail, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Kind, e.Detail)
}

// Unwrap returns the internal cause.
func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ca.NotFound) true for any *Error of that kind.
func (e *Error) Is(target error) bool {
	if k, ok := target.(Kind); ok {
		return e.Kind == k
	}
	return false
}

// Error lets a Kind be used as an errors.Is target.
func (k Kind) Error() string { return k.String() }

// AsError returns the *Error in err's chain, however deeply it is wrapped,
// and whether there is one. Surfaces use it rather than a type assertion,
// which misses (or, unchecked, panics on) a wrapped *Error.
func AsError(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) && e != nil {
		return e, true
	}
	return nil, false
}

// KindOf returns the kind of err; an untyped error is Internal.
func KindOf(err error) Kind {
	if e, ok := AsError(err); ok {
		return e.Kind
	}
	return Internal
}

func errorf(k Kind, format string, args ...any) *Error {
	return &Error{Kind: k, Detail: fmt.Sprintf(format, args...)}
}

func internal(detail string, err error) *Error {
	return &Error{Kind: Internal, Detail: detail, Err: err}
}
