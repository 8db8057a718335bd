package api_test

import (
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/ca"
)

// pageThrough follows next_cursor from query to the last page.
func (e *testEnv) pageThrough(t *testing.T, token string, query url.Values) []api.Certificate {
	t.Helper()
	var all []api.Certificate
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatal("pagination does not end")
		}
		var page api.CertificateList
		e.getJSON(t, "GET", "/v1/certificates?"+query.Encode(), token, nil, http.StatusOK, &page)
		all = append(all, page.Certificates...)
		if page.NextCursor == "" {
			return all
		}
		query.Set("cursor", page.NextCursor)
	}
}

func serialsOf(cs []api.Certificate) []string {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.Serial)
	}
	return out
}

// TestCertificateQueryAPI checks the query parameters end to end: filters
// reach the store, every sort pages through every match once in order, a
// cursor is bound to its sort, and mistakes are refused, not ignored.
func TestCertificateQueryAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var issued []api.SignResponse
	for i, name := range []string{"a.team.example", "b.team.example", "c.other.example", "team.example.net", "d.team.example"} {
		var out api.SignResponse
		req := api.SignRequest{CSR: csrPEM(t, newKey(t), "", name), Profile: "tls-server",
			Validity: (time.Duration(24*(10-i)) * time.Hour).String()}
		e.getJSON(t, "POST", "/v1/sign", e.admin, req, http.StatusCreated, &out)
		issued = append(issued, out)
		e.clk.Advance(time.Minute)
	}
	e.revoke(t, e.admin, map[string]string{"serial": issued[1].Serial, "reason": "superseded"})

	t.Run("filters", func(t *testing.T) {
		tests := []struct {
			query string
			want  []int // indexes into issued, in the default order (newest first)
		}{
			{"name=TEAM.example", []int{4, 3, 1, 0}},
			{"name_exact=b.team.example", []int{1}},
			{"name_suffix=.team.example", []int{4, 1, 0}},
			{"status=revoked", []int{1}},
			{"status=valid&name_suffix=.example", []int{4, 2, 0}},
			{"channel=api&name_exact=c.other.example", []int{2}},
			{"channel=acme", nil},
			{"serial=" + issued[3].Serial, []int{3}},
		}
		for _, tt := range tests {
			var got api.CertificateList
			e.getJSON(t, "GET", "/v1/certificates?"+tt.query, e.admin, nil, http.StatusOK, &got)
			var want []string
			for _, i := range tt.want {
				want = append(want, issued[i].Serial)
			}
			if g := serialsOf(got.Certificates); !slices.Equal(g, want) && (len(g) != 0 || len(want) != 0) {
				t.Errorf("%s: got %v, want %v", tt.query, g, want)
			}
		}
	})

	t.Run("sorts page in order", func(t *testing.T) {
		// issued[i] has a validity of 10-i days from its own issue time:
		// expiry order is the reverse of issue order.
		byIssue := []string{}
		for _, s := range issued {
			byIssue = append(byIssue, s.Serial)
		}
		rev := slices.Clone(byIssue)
		slices.Reverse(rev)
		for sort, want := range map[string][]string{
			"issued_asc": byIssue, "issued_desc": rev, "expiry_asc": rev, "expiry_desc": byIssue,
		} {
			got := serialsOf(e.pageThrough(t, e.admin, url.Values{"sort": {sort}, "limit": {"2"}, "name": {"example"}}))
			if !slices.Equal(got, want) {
				t.Errorf("sort=%s: %v, want %v", sort, got, want)
			}
		}
	})

	t.Run("cursor bound to its sort", func(t *testing.T) {
		var page api.CertificateList
		e.getJSON(t, "GET", "/v1/certificates?limit=1&sort=expiry_asc", e.admin, nil, http.StatusOK, &page)
		if page.NextCursor == "" {
			t.Fatal("no next cursor")
		}
		e.getJSON(t, "GET", "/v1/certificates?limit=1&sort=issued_desc&cursor="+page.NextCursor, e.admin, nil, http.StatusBadRequest, nil)
		e.getJSON(t, "GET", "/v1/certificates?cursor=12", e.admin, nil, http.StatusBadRequest, nil)
	})

	t.Run("mistakes refused", func(t *testing.T) {
		for _, q := range []string{"name_suffx=.example", "status=suspended", "sort=name", "limit=0",
			"issued_after=yesterday", "profile=a&profile=b", "name=" + string(make([]byte, 1025))} {
			e.getJSON(t, "GET", "/v1/certificates?"+url.PathEscape(q), e.admin, nil, http.StatusBadRequest, nil)
		}
	})
}

// TestCertificateSummaryAPI compares the summary with the list it counts,
// and checks an issuer counts only what it requested.
func TestCertificateSummaryAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	issuer, issuerID := e.createToken(t, ca.RoleIssuer, "tls-server")
	for i := range 3 {
		e.sign(t, e.admin, "tls-server", "admin"+string(rune('a'+i))+".example")
	}
	serial := e.sign(t, issuer, "tls-server", "mine.example").Serial
	e.revoke(t, e.admin, map[string]string{"serial": serial, "reason": "keyCompromise"})

	summary := func(token, query string) api.CertificateSummary {
		var out api.CertificateSummary
		e.getJSON(t, "GET", "/v1/certificates/summary?"+query, token, nil, http.StatusOK, &out)
		return out
	}
	all := e.certs(t, e.admin)
	byRequester := map[string]int64{}
	for _, c := range all {
		byRequester[c.Requester]++
	}
	got := summary(e.admin, "by=requester")
	if got.Total != int64(len(all)) || len(got.Groups) != len(byRequester) {
		t.Fatalf("summary by requester = %+v, want %v over %d", got, byRequester, len(all))
	}
	for _, g := range got.Groups {
		if byRequester[g.Key] != g.Count {
			t.Errorf("requester %s: %d, want %d", g.Key, g.Count, byRequester[g.Key])
		}
	}
	if got := summary(issuer, "by=status"); got.Total != 1 || len(got.Groups) != 1 || got.Groups[0] != (api.SummaryGroup{Key: "revoked", Count: 1}) {
		t.Errorf("issuer's own summary = %+v, want its one revoked certificate (requester token:%s)", got, issuerID)
	}
	day := e.clk.Now().UTC().Format("2006-01-02")
	if got := summary(e.admin, "by=day&profile=tls-server"); len(got.Groups) != 1 || got.Groups[0].Key != day || got.Groups[0].Count != 4 {
		t.Errorf("per day = %+v, want 4 on %s", got, day)
	}
	for _, q := range []string{"", "by=colour", "by=day&limit=5", "by=day&bogus=1"} {
		e.getJSON(t, "GET", "/v1/certificates/summary?"+q, e.admin, nil, http.StatusBadRequest, nil)
	}
}
