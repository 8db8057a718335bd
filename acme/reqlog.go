package acme

import (
	"net/http"
)

// statusRecorder remembers the status a handler sent, so that the request
// log says what went on the wire (201 for a new account or order, 200 for
// a HEAD) rather than what the adapter assumed.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// status is the status sent, 200 if the handler wrote nothing (net/http
// sends 200 then).
func (s *statusRecorder) status() int {
	if s.code == 0 {
		return http.StatusOK
	}
	return s.code
}

// maxLoggedDetail bounds a problem detail in the log: details can quote
// what the client sent.
const maxLoggedDetail = 512

// problemAttrs are the log attributes saying why a request was refused:
// the problem document the client got, which holds nothing the client
// may not see (internal errors are logged apart, by the adapter).
func problemAttrs(p *Problem) []any {
	if p == nil {
		return nil
	}
	detail := p.Detail
	if len(detail) > maxLoggedDetail {
		detail = detail[:maxLoggedDetail] + "..."
	}
	attrs := []any{"problem_type", p.Type, "problem_detail", detail}
	if n := len(p.Subproblems); n > 0 {
		attrs = append(attrs, "subproblems", n)
	}
	return attrs
}
