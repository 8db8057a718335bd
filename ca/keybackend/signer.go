package keybackend

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"net"
)

// signer wraps a backend's crypto.Signer so that a failure to reach the
// backend wraps ErrUnavailable (callers answer 503 and retry) and every
// error names the key.
type signer struct {
	crypto.Signer
	uri string
}

func (s signer) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	sig, err := s.Signer.Sign(rand, digest, opts)
	if err != nil {
		if unreachable(err) {
			return nil, fmt.Errorf("sign with %s: %w: %w", s.uri, ErrUnavailable, err)
		}
		return nil, fmt.Errorf("sign with %s: %w", s.uri, err)
	}
	return sig, nil
}

// wrapSigner returns k with its signer wrapped.
func wrapSigner(k *Key) *Key {
	if k == nil {
		return nil
	}
	if _, ok := k.Signer.(signer); !ok {
		k.Signer = signer{Signer: k.Signer, uri: k.URI.String()}
	}
	return k
}

// unreachable reports whether err means the backend could not be reached,
// rather than that it refused: a network failure or timeout (KMS), or a
// token or session that is gone (PKCS#11).
func unreachable(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) || p11Unreachable(err)
}
