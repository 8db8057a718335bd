package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"

	"github.com/spf13/cobra"

	"github.com/sigil-ca/sigil/api/client"
)

type fakeItem struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

type fakePage struct {
	Items      []fakeItem `json:"items"`
	NextCursor string     `json:"next_cursor,omitempty"`
}

// runFakeList runs a list command built by listCmd over page with args, and
// returns its stdout and stderr. The client is never called: fetch answers.
func runFakeList(t *testing.T, page fakePage, fetchErr error, args ...string) (string, string, error) {
	t.Helper()
	var fetched []string
	cmd := listCmd(&cobra.Command{Use: "list", Args: cobra.ArbitraryArgs}, listSpec[fakePage, fakeItem]{
		fetch: func(_ context.Context, c *client.Client, args []string) (fakePage, error) {
			if c == nil {
				t.Error("fetch got no client")
			}
			fetched = args
			return page, fetchErr
		},
		items: func(p fakePage) []fakeItem { return p.Items },
		next:  func(p fakePage) string { return p.NextCursor },
		cols: []column[fakeItem]{
			{"NAME", func(i fakeItem) string { return i.Name }},
			{"COUNT", func(i fakeItem) string { return strconv.Itoa(i.Count) }},
		},
	})
	var stdout, stderr bytes.Buffer
	cmd.SetOut(&stdout)
	cmd.SetErr(&stderr)
	cmd.SetArgs(append([]string{"--server", "https://127.0.0.1:1", "--token", "t", "--ca-file", ""}, args...))
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.Execute()
	if err == nil && len(args) > 0 && args[len(args)-1] == "positional" && (len(fetched) != 1 || fetched[0] != "positional") {
		t.Errorf("fetch got args %q, want the positional one", fetched)
	}
	return stdout.String(), stderr.String(), err
}

// TestListCmd: the list helper prints the columns as a table, as CSV, and the
// answer itself as JSON; a paged answer hints at its next page (table only);
// a bad format is refused before anything is fetched.
func TestListCmd(t *testing.T) {
	t.Parallel()
	page := fakePage{Items: []fakeItem{{"alpha", 1}, {"b, with comma", 22}}, NextCursor: "c2"}
	for _, tc := range []struct {
		name       string
		args       []string
		page       fakePage
		wantOut    string
		wantErrOut string
	}{
		{"table", nil, page, "NAME           COUNT\nalpha          1\nb, with comma  22\n",
			"more results: --cursor c2 (or --all)\n"},
		{"table, last page", []string{"--format", "table"}, fakePage{Items: page.Items}, "NAME           COUNT\nalpha          1\nb, with comma  22\n", ""},
		{"csv", []string{"--format", "csv"}, page, "NAME,COUNT\nalpha,1\n\"b, with comma\",22\n", ""},
		{"json", []string{"--format", "json"}, page,
			"{\n  \"items\": [\n    {\n      \"name\": \"alpha\",\n      \"count\": 1\n    },\n    {\n      \"name\": \"b, with comma\",\n      \"count\": 22\n    }\n  ],\n  \"next_cursor\": \"c2\"\n}\n", ""},
		{"empty table", nil, fakePage{}, "NAME  COUNT\n", ""},
		{"positional", []string{"positional"}, fakePage{}, "NAME  COUNT\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, errOut, err := runFakeList(t, tc.page, nil, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			if out != tc.wantOut {
				t.Errorf("stdout:\n%q\nwant:\n%q", out, tc.wantOut)
			}
			if errOut != tc.wantErrOut {
				t.Errorf("stderr %q, want %q", errOut, tc.wantErrOut)
			}
		})
	}
	t.Run("bad format", func(t *testing.T) {
		t.Parallel()
		out, _, err := runFakeList(t, page, nil, "--format", "yaml")
		if err == nil || err.Error() != `--format "yaml": want table, json or csv` || out != "" {
			t.Errorf("--format yaml: %v, output %q", err, out)
		}
	})
	t.Run("fetch error", func(t *testing.T) {
		t.Parallel()
		boom := errors.New("boom")
		out, _, err := runFakeList(t, page, boom)
		if !errors.Is(err, boom) || out != "" {
			t.Errorf("fetch error: %v, output %q", err, out)
		}
	})
}

// TestFetchList: fetchList sends the non-empty parameters and the limit,
// and with all follows next_cursor to the last page; without all it stops
// after one page and returns the cursor of the next.
func TestFetchList(t *testing.T) {
	t.Parallel()
	pages := map[string]fakePage{
		"":   {Items: []fakeItem{{"a", 1}}, NextCursor: "p2"},
		"p2": {Items: []fakeItem{{"b", 2}}, NextCursor: "p3"},
		"p3": {Items: []fakeItem{{"c", 3}}},
	}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if r.URL.Path != "/v1/fake" || q.Get("limit") != "7" || q.Get("who") != "me" || q.Has("empty") {
			http.Error(w, `{"error":"malformed","detail":"bad query `+r.URL.RawQuery+`"}`, http.StatusBadRequest)
			return
		}
		_ = json.NewEncoder(w).Encode(pages[q.Get("cursor")])
	}))
	defer srv.Close()
	c, err := client.New(client.Config{Server: srv.URL, Token: "t", HTTP: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	page := func(ctx context.Context, q url.Values) (fakePage, error) {
		resp, err := c.Stream(ctx, "/v1/fake?"+q.Encode())
		if err != nil {
			return fakePage{}, err
		}
		defer resp.Body.Close()
		var p fakePage
		return p, json.NewDecoder(resp.Body).Decode(&p)
	}
	unpack := func(p fakePage) ([]fakeItem, string) { return p.Items, p.NextCursor }
	params := map[string]string{"who": "me", "empty": ""}
	for _, tc := range []struct {
		all      bool
		want     string
		wantNext string
	}{{true, "abc", ""}, {false, "a", "p2"}} {
		items, next, err := fetchList(context.Background(), page, params, 7, tc.all, unpack)
		if err != nil {
			t.Fatalf("all=%v: %v", tc.all, err)
		}
		var got string
		for _, it := range items {
			got += it.Name
		}
		if got != tc.want || next != tc.wantNext {
			t.Errorf("all=%v: items %q, next %q; want %q, %q", tc.all, got, next, tc.want, tc.wantNext)
		}
	}
	_, _, err = fetchList(context.Background(), page, map[string]string{"who": "you"}, 7, true, unpack)
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != http.StatusBadRequest || ce.Kind != "malformed" {
		t.Errorf("refused page: %v, want a *client.Error 400 malformed", err)
	}
}
