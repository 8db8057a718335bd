package main

import (
	"bufio"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// e2eMetricSum sums every sample of the named counter on /metrics.
func e2eMetricSum(t *testing.T, client *http.Client, p *serverProc, name string) float64 {
	t.Helper()
	resp, err := client.Get(p.httpsURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

// e2eStatus sends req and returns its status.
func e2eStatus(t *testing.T, client *http.Client, req *http.Request) int {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestUnauthenticatedRefusalsEndToEnd (issue 15, item 3): requests refused
// before the caller authenticated (POST /v1/renew without a client
// certificate; Sigil-shaped tokens with a wrong secret or an unknown id on
// the API, a managed bundle and the auditor page's login) leave the audit
// chain as it was, while sigil_unauthenticated_refusals_total counts each;
// the chain gets one summary per source with their count (here at
// shutdown). A refusal of an authenticated caller is still audited.
func TestUnauthenticatedRefusalsEndToEnd(t *testing.T) {
	t.Parallel()
	inProcess(t)
	c := initCA(t)
	p := startServe(t, c)
	client := c.httpClient(t)
	const metric = "sigil_unauthenticated_refusals_total"

	e2eAwaitJobsIdle(t, p, c)
	before := len(e2eListAudit(t, p, c))
	metricBefore := e2eMetricSum(t, client, p, metric)
	id, _ := strings.CutPrefix(c.adminToken, "sigil_")
	id, _, _ = strings.Cut(id, "_")
	wrongSecret := "sigil_" + id + "_" + strings.Repeat("A", 43)
	unknownID := "sigil_0123456789abcdef_" + strings.Repeat("B", 43)

	const rounds = 10
	sent := 0
	for range rounds {
		req, _ := http.NewRequest("POST", p.httpsURL+"/v1/renew", nil)
		if got := e2eStatus(t, client, req); got != http.StatusUnauthorized {
			t.Fatalf("renew without a client certificate: %d", got)
		}
		for _, tok := range []string{wrongSecret, unknownID} {
			req, _ := http.NewRequest("GET", p.httpsURL+"/v1/certificates", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			if got := e2eStatus(t, client, req); got != http.StatusUnauthorized {
				t.Fatalf("API with token %.24s...: %d", tok, got)
			}
			req, _ = http.NewRequest("GET", p.httpsURL+"/v1/managed/web/bundle", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			if got := e2eStatus(t, client, req); got != http.StatusUnauthorized {
				t.Fatalf("bundle with token %.24s...: %d", tok, got)
			}
		}
		sent += 5
	}
	// The auditor page's login, with the form it serves (its own rate
	// limit allows a few failures a minute per address).
	for _, tok := range []string{wrongSecret, unknownID} {
		resp, err := client.Get(p.httpsURL + "/ui/login")
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(page)
		if m == nil {
			t.Fatalf("login form without csrf:\n%s", page)
		}
		form := url.Values{"csrf": {string(m[1])}, "token": {tok}}
		req, _ := http.NewRequest("POST", p.httpsURL+"/ui/login", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for _, ck := range resp.Cookies() {
			req.AddCookie(ck)
		}
		if got := e2eStatus(t, client, req); got != http.StatusUnauthorized {
			t.Fatalf("ui login with token %.24s...: %d", tok, got)
		}
		sent++
	}

	events := e2eListAudit(t, p, c)
	summaries := 0
	for _, e := range events[before:] {
		if e.Action == "access.refused.summary" {
			summaries++ // the periodic flush may fall inside the test
		}
	}
	if grew := len(events) - before - summaries; grew != 0 || summaries > 1 {
		t.Errorf("%d unauthenticated refusals grew the audit chain by %d events (%d summaries); new events: %+v",
			sent, len(events)-before, summaries, events[before:])
	}
	if got := e2eMetricSum(t, client, p, metric) - metricBefore; got != float64(sent) {
		t.Errorf("%s grew by %v, want %d", metric, got, sent)
	}

	// An authenticated caller refused (an auditor token on an admin
	// endpoint) is audited, once per request.
	auditor, _ := e2eRun(t, e2eAdmin(p, c, "token", "create", "--role", "auditor")...)
	auditor = strings.TrimSpace(auditor)
	for range 2 {
		req, _ := http.NewRequest("GET", p.httpsURL+"/v1/tokens", nil)
		req.Header.Set("Authorization", "Bearer "+auditor)
		if got := e2eStatus(t, client, req); got != http.StatusForbidden {
			t.Fatalf("auditor on an admin endpoint: %d", got)
		}
	}
	if refused := e2eListAudit(t, p, c, "--action", "access.refused"); len(refused) != 2 {
		t.Errorf("access.refused events of the auditor %+v, want 2", refused)
	}

	// At shutdown the pending summary is written: one event for the one
	// source, counting every refusal not summed before.
	p.stop(t)
	p = startServe(t, c)
	var counted int
	sums := e2eListAudit(t, p, c, "--action", "access.refused.summary")
	for _, e := range sums {
		n, err := strconv.Atoi(e.Detail["count"])
		if err != nil || e.Actor != "anonymous" || e.Target != "127.0.0.1" {
			t.Errorf("summary event %+v", e)
		}
		counted += n
	}
	if len(sums) < 1 || len(sums) > 2 || counted != sent {
		t.Errorf("%d summary events counting %d refusals, want one or two counting %d: %+v", len(sums), counted, sent, sums)
	}
}
