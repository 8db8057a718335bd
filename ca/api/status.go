package api

import (
	"net/http"

	"github.com/sigil-ca/sigil/ca"
)

// statusOf maps every ca.Kind to an HTTP status; TestStatusTable covers each.
var statusOf = map[ca.Kind]int{
	ca.Internal:     http.StatusInternalServerError,
	ca.NotFound:     http.StatusNotFound,
	ca.Malformed:    http.StatusBadRequest,
	ca.Unauthorized: http.StatusUnauthorized,
	ca.Forbidden:    http.StatusForbidden,
	ca.RateLimited:  http.StatusTooManyRequests,
	ca.BadCSR:       http.StatusBadRequest,
	ca.Rejected:     http.StatusForbidden,
	ca.Conflict:     http.StatusConflict,
	ca.Unavailable:  http.StatusServiceUnavailable,
}

func status(k ca.Kind) int {
	if s, ok := statusOf[k]; ok {
		return s
	}
	return http.StatusInternalServerError
}
