package httpstatus

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestAllowed(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	nop := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	mux.Handle("GET /x/dir", nop)
	mux.Handle("POST /x/item/{id}", nop)
	mux.Handle("DELETE /x/item/{id}", nop)
	mux.Handle("/x/", nop)
	tests := []struct {
		method, path, want string
	}{
		{http.MethodPost, "/x/dir", "GET,HEAD"}, // a GET pattern serves HEAD too
		{http.MethodGet, "/x/item/7", "POST,DELETE"},
		{http.MethodGet, "/x/nothing", ""}, // only the catch-all: a 404, not a 405
	}
	for _, tt := range tests {
		got := strings.Join(Allowed(mux, httptest.NewRequest(tt.method, tt.path, nil), "/x/"), ",")
		if got != tt.want {
			t.Errorf("Allowed(%s %s) = %q, want %q", tt.method, tt.path, got, tt.want)
		}
	}
}

func TestWriterCode(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		write func(w http.ResponseWriter)
		want  int
	}{
		{"nothing", func(http.ResponseWriter) {}, http.StatusOK},
		{"body", func(w http.ResponseWriter) { _, _ = w.Write([]byte("x")) }, http.StatusOK},
		{"first status wins", func(w http.ResponseWriter) { w.WriteHeader(http.StatusCreated); w.WriteHeader(http.StatusTeapot) }, http.StatusCreated},
	} {
		w := &Writer{ResponseWriter: httptest.NewRecorder()}
		tt.write(w)
		if got := w.Code(); got != tt.want {
			t.Errorf("%s: Code() = %d, want %d", tt.name, got, tt.want)
		}
	}
}
