package wire

import (
	"net/http"

	"github.com/sigil-ca/sigil/ca"
)

// Status is the HTTP status an error of kind k answers with, on every
// surface of the CA. api's TestStatusTable covers each kind.
func Status(k ca.Kind) int {
	switch k {
	case ca.NotFound:
		return http.StatusNotFound
	case ca.Malformed, ca.BadCSR:
		return http.StatusBadRequest
	case ca.Unauthorized:
		return http.StatusUnauthorized
	case ca.Forbidden, ca.Rejected:
		return http.StatusForbidden
	case ca.RateLimited:
		return http.StatusTooManyRequests
	case ca.Conflict:
		return http.StatusConflict
	case ca.Unavailable:
		return http.StatusServiceUnavailable
	case ca.TooLarge:
		return http.StatusRequestEntityTooLarge
	default:
		return http.StatusInternalServerError
	}
}
