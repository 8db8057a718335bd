package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/api/client"
)

// TestAuditExportCutShort: an export the server aborts mid-stream, or one
// with fewer events than announced, fails and leaves no file behind.
func TestAuditExportCutShort(t *testing.T) {
	t.Parallel()
	line := `{"type":"event","seq":1}` + "\n"
	for _, tc := range []struct {
		name  string
		abort bool
		want  string
	}{
		{"aborted", true, "cut short after 2 events"},
		{"fewer events", false, "2 of 5 events"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set(api.AuditEventsHeader, "5")
				w.WriteHeader(http.StatusOK)
				_, _ = w.Write([]byte(line + line))
				w.(http.Flusher).Flush()
				if tc.abort {
					panic(http.ErrAbortHandler)
				}
			}))
			defer srv.Close()
			c, err := client.New(client.Config{Server: srv.URL, Token: "t", HTTP: srv.Client()})
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			path := filepath.Join(dir, "audit.ndjson")
			var progress strings.Builder
			_, err = exportAudit(context.Background(), c, url.Values{}, "ndjson", path, &progress)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("exportAudit = %v, want %q", err, tc.want)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("a failed export left %d files", len(ents))
			}
		})
	}
}
