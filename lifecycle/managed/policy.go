package managed

import (
	"math/big"
	"strconv"
	"strings"

	"github.com/sigil-ca/sigil/ca"
)

// DefaultRenewAt is the renewal point of a managed certificate that names
// none: two thirds of its lifetime.
const DefaultRenewAt = "2/3"

// parseRenewAt reads a renewal point as a fraction strictly between 0 and 1.
func parseRenewAt(s string) (*big.Rat, error) {
	return ca.ParseLifetimePoint("renew-at", s, DefaultRenewAt)
}

// parseRotateKey reads a rotation policy as store.ManagedRecord.RotateEvery.
func parseRotateKey(s string) (int, error) {
	switch in := strings.ToLower(strings.TrimSpace(s)); in {
	case "", "always":
		return 1, nil
	case "never":
		return 0, nil
	default:
		if n, ok := strings.CutPrefix(in, "every:"); ok {
			if v, err := strconv.Atoi(n); err == nil && v >= 1 && v <= 1000 {
				return v, nil
			}
		}
	}
	return 0, errorf(ca.Malformed, "rotate-key %q: want always, never or every:N (N from 1 to 1000)", s)
}

// RotateKeyString renders store.ManagedRecord.RotateEvery as parseRotateKey
// reads it.
func RotateKeyString(n int) string {
	switch n {
	case 0:
		return "never"
	case 1:
		return "always"
	}
	return "every:" + strconv.Itoa(n)
}
