// Package httpstatus records the status an HTTP handler sent, so that the
// request logs of the API, the auditor page and ACME say what went on the
// wire (201 for a new object, 200 for a HEAD) rather than what a wrapper
// assumed, and lists the methods a path allows, for the Allow header of a
// 405.
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

// probeMethods are the methods Allowed tries.
var probeMethods = [...]string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// Allowed lists the methods some route of mux other than catchAll serves
// r's path with, for the Allow header of a 405 (RFC 9110 §15.5.6). A
// surface with a catch-all pattern needs it: the catch-all matches every
// method, so ServeMux never answers 405 by itself.
func Allowed(mux *http.ServeMux, r *http.Request, catchAll string) []string {
	var out []string
	for _, m := range probeMethods {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := mux.Handler(probe); pattern != "" && pattern != catchAll {
			out = append(out, m)
		}
	}
	return out
}
