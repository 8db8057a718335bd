package api_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/lifecycle/managed"
	"github.com/sigil-ca/sigil/store"
)

// fakeJobs serves /v1/jobs in tests that need every route registered.
type fakeJobs struct{}

func (fakeJobs) JobStatus(context.Context) ([]api.JobStatus, error) {
	return []api.JobStatus{{Name: "crl-publish", Schedule: "every 1h", Enabled: true}}, nil
}

func (fakeJobs) JobRuns(context.Context, string, int) ([]store.JobRun, error) { return nil, nil }

func (fakeJobs) TriggerJob(context.Context, string, string) error {
	return &ca.Error{Kind: ca.Internal, Detail: "a test must not reach TriggerJob"}
}

// newFullEnv serves every optional route group (EAB, jobs, managed), so
// that Routes is the whole API.
func newFullEnv(t testing.TB) *testEnv {
	t.Helper()
	return newEnvWith(t, func(cfg *api.Config, auth *ca.Authority, svc *managed.Service) {
		cfg.Jobs = fakeJobs{}
		cfg.Managed = svc
		cfg.Intermediates = auth.Intermediates()
		cfg.CreateEAB = func(context.Context, string, string, string) (string, []byte, string, error) {
			return "", nil, "", &ca.Error{Kind: ca.Internal, Detail: "a test must not reach CreateEAB"}
		}
	})
}

// auditorReadable is every endpoint an auditor token may call: GETs of
// records and history that reveal no key material. Everything else the API
// serves, including any endpoint added later, must refuse an auditor until
// it is listed here on purpose. Entries the handler does not serve are
// ignored.
func auditorReadable() map[string]bool {
	return map[string]bool{
		"GET /v1/certificates":          true,
		"GET /v1/certificates/{serial}": true,
		"GET /v1/audit":                 true,
		"GET /v1/keys":                  true, // inventory: ids, states, dates; never key bytes
		"GET /v1/keys/{id}/attestation": true, // one key's record and live attestation; never key bytes
		"GET /v1/jobs":                  true,
		"GET /v1/jobs/{name}":           true,
		"GET /v1/managed":               true,
		"GET /v1/managed/{name}":        true,
		"GET /v1/ca/intermediates":      true, // ids, states, validity; never key bytes
		"GET /v1/certificates/summary":  true,
		"GET /v1/certificates/export":   true,
		"GET /v1/audit/export":          true,
		"GET /v1/log/sth":               true,
		"GET /v1/log/proof/inclusion":   true,
		"GET /v1/log/proof/consistency": true,
		"GET /v1/log/entries":           true,
	}
}

// routePath fills a pattern's wildcards with plausible values: refusals
// happen before the handler reads them.
func routePath(pattern, serial string) (method, path string) {
	method, path, _ = strings.Cut(pattern, " ")
	r := strings.NewReplacer("{serial}", serial, "{name}", "web", "{id}", "0123456789abcdef")
	return method, r.Replace(path)
}

// TestAuditorAccessEveryRoute walks the whole route table: an auditor token
// is refused (403, audited) on every endpoint that changes state or reveals
// key material, and served on the reads it may make.
func TestAuditorAccessEveryRoute(t *testing.T) {
	t.Parallel()
	e := newFullEnv(t)
	auditor, auditorID := e.createToken(t, ca.RoleAuditor)
	serial := e.sign(t, e.admin, "tls-server", "routes.example").Serial
	readable := auditorReadable()
	routes := e.api.Routes()
	if len(routes) < 20 {
		t.Fatalf("Routes lists %d endpoints; the full configuration serves more", len(routes))
	}
	seen := map[string]bool{}
	for _, rt := range routes {
		if seen[rt.Pattern] {
			t.Errorf("route %s registered twice", rt.Pattern)
		}
		seen[rt.Pattern] = true
		method, path := routePath(rt.Pattern, serial)
		if readable[rt.Pattern] {
			if method != http.MethodGet {
				t.Errorf("%s: only GET endpoints may be auditor-readable", rt.Pattern)
			}
			resp, data := e.do(t, method, path, auditor, nil)
			if resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusUnauthorized || resp.StatusCode >= 500 {
				t.Errorf("%s: auditor got %d, want it served: %s", rt.Pattern, resp.StatusCode, data)
			}
			continue
		}
		before := len(e.audit(t, "action=access.refused&actor=token:"+auditorID))
		var body any
		if method != http.MethodGet && method != http.MethodDelete {
			body = map[string]any{}
		}
		resp, data := e.do(t, method, path, auditor, body)
		want := http.StatusForbidden
		if rt.Pattern == "POST /v1/renew" {
			// Renewal ignores tokens: without the certificate to renew as
			// the TLS client certificate it is Unauthorized.
			want = http.StatusUnauthorized
		}
		if resp.StatusCode != want {
			t.Errorf("%s: auditor got %d, want %d: %s", rt.Pattern, resp.StatusCode, want, data)
			continue
		}
		if rt.Roles != nil {
			if got := len(e.audit(t, "action=access.refused&actor=token:"+auditorID)) - before; got != 1 {
				t.Errorf("%s: %d access.refused events for the auditor, want 1", rt.Pattern, got)
			}
		}
	}
	// The table names only served routes, and every auditor-readable one
	// that exists was checked above.
	for p := range readable {
		if !seen[p] {
			t.Logf("auditor-readable %s is not served by this build (yet)", p)
		}
	}
	if !seen["GET /v1/managed/{name}/bundle"] {
		t.Error("the managed bundle endpoint (key material) is not in Routes")
	}
}

// TestAuditorReadsAudited: each auditor read is an audit.read event naming
// the actor, path and query, recorded before it is answered; admin reads
// and refused requests are not.
func TestAuditorReadsAudited(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	auditor, auditorID := e.createToken(t, ca.RoleAuditor)
	serial := e.sign(t, e.admin, "tls-server", "reads.example").Serial
	reads := func() []api.AuditEvent { return e.audit(t, "action=audit.read") }

	e.getJSON(t, "GET", "/v1/certificates?name=reads.example&limit=5", auditor, nil, http.StatusOK, nil)
	e.getJSON(t, "GET", "/v1/certificates/"+serial, auditor, nil, http.StatusOK, nil)
	e.getJSON(t, "GET", "/v1/certificates/"+serial, e.admin, nil, http.StatusOK, nil)
	if resp, _ := e.do(t, "POST", "/v1/revoke", auditor, map[string]string{"serial": serial}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("auditor revoke: %d", resp.StatusCode)
	}
	long := "name=" + strings.Repeat("x", 1000) + "&requester=" + strings.Repeat("x", 2000)
	e.getJSON(t, "GET", "/v1/certificates?"+long, auditor, nil, http.StatusOK, nil)

	got := reads()
	if len(got) != 3 {
		t.Fatalf("%d audit.read events, want 3 (auditor reads only): %+v", len(got), got)
	}
	tests := []struct {
		name, path, query string
		truncated         bool
	}{
		{"list", "/v1/certificates", "name=reads.example&limit=5", false},
		{"detail", "/v1/certificates/" + serial, "", false},
		{"long query", "/v1/certificates", long[:1024], true},
	}
	for i, tc := range tests {
		ev := got[i]
		if ev.Actor != "token:"+auditorID || ev.Target != tc.path || ev.Detail["path"] != tc.path ||
			ev.Detail["method"] != "GET" || ev.Detail["query"] != tc.query {
			t.Errorf("%s: event %+v, want actor token:%s path %s query %q", tc.name, ev, auditorID, tc.path, tc.query)
		}
		if (ev.Detail["query_truncated"] == "true") != tc.truncated {
			t.Errorf("%s: query_truncated = %q, want %v", tc.name, ev.Detail["query_truncated"], tc.truncated)
		}
	}
	if q, _ := url.ParseQuery(got[0].Detail["query"]); q.Get("name") != "reads.example" {
		t.Errorf("recorded query %q does not parse back", got[0].Detail["query"])
	}
}

// BenchmarkAuditorRead measures what auditing a read costs: the same GET
// by an admin token (not recorded) and by an auditor token (one audit
// append through the group commit), serially and with parallel readers.
func BenchmarkAuditorRead(b *testing.B) {
	e := newEnvWith(b, nil)
	ctx := context.Background()
	auditor, _, err := e.auth.Access().CreateToken(ctx, "bench", ca.RoleAuditor, nil, 0, "bench")
	if err != nil {
		b.Fatal(err)
	}
	get := func(b *testing.B, token string) {
		req, _ := http.NewRequest("GET", e.srv.URL+"/v1/certificates?limit=10", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := e.client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	// The audit append alone, as each auditor read pays it.
	b.Run("record/serial", func(b *testing.B) {
		for b.Loop() {
			if err := e.auth.Access().RecordRead(ctx, "token:bench", "GET", "/v1/certificates", "limit=10"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("record/parallel", func(b *testing.B) {
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := e.auth.Access().RecordRead(ctx, "token:bench", "GET", "/v1/certificates", "limit=10"); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	for _, tc := range []struct{ name, token string }{{"admin", e.admin}, {"auditor", auditor}} {
		b.Run(tc.name+"/serial", func(b *testing.B) {
			for b.Loop() {
				get(b, tc.token)
			}
		})
		b.Run(tc.name+"/parallel", func(b *testing.B) {
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					get(b, tc.token)
				}
			})
		})
	}
}
