package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/sigil-ca/sigil/internal/testclock"
	"github.com/sigil-ca/sigil/store"
)

// TestHealthzDatabaseGone: /healthz says 503 "unavailable" with the role
// unreachable once the store no longer answers, and 200 "ok" with its role
// before.
func TestHealthzDatabaseGone(t *testing.T) {
	t.Parallel()
	st, err := store.Open(context.Background(), store.Config{Path: filepath.Join(t.TempDir(), "sigil.db"), Clock: testclock.New()})
	if err != nil {
		t.Fatal(err)
	}
	s := &server{st: st, cfg: &Config{Node: NodeConfig{Name: "n1"}}, log: slog.New(slog.DiscardHandler)}
	check := func(wantCode int, want healthBody) {
		t.Helper()
		rec := httptest.NewRecorder()
		s.healthz(rec, httptest.NewRequest("GET", "/healthz", nil))
		var got healthBody
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || rec.Code != wantCode || got != want {
			t.Errorf("/healthz: %d %+v %v, want %d %+v", rec.Code, got, err, wantCode, want)
		}
	}
	check(http.StatusOK, healthBody{Status: "ok", Node: "n1", Database: dbHealth{Role: store.RoleEmbedded}})
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	check(http.StatusServiceUnavailable, healthBody{Status: "unavailable", Node: "n1", Database: dbHealth{Role: store.RoleUnreachable}})
}
