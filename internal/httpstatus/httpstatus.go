// Package httpstatus records the status an HTTP handler sent, so that the
// request logs of the API, the auditor page and ACME say what went on the
// wire (201 for a new object, 200 for a HEAD) rather than what a wrapper
// assumed.
package httpstatus

import "net/http"

// Writer wraps a ResponseWriter and remembers the first status sent.
type Writer struct {
	http.ResponseWriter
	status int
}

// WriteHeader implements http.ResponseWriter.
func (s *Writer) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

// Write implements http.ResponseWriter.
func (s *Writer) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Flush lets streamed downloads reach the client as they are written.
func (s *Writer) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.NewResponseController reach the connection's writer
// (Flush and write deadlines, for streamed exports).
func (s *Writer) Unwrap() http.ResponseWriter {
	return s.ResponseWriter
}

// Code is the status sent, 200 if the handler wrote nothing (net/http
// sends 200 then).
func (s *Writer) Code() int {
	if s.status == 0 {
		return http.StatusOK
	}
	return s.status
}
