package api

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/sigil-ca/sigil/api/wire"
	"github.com/sigil-ca/sigil/ca"
)

// queryParams lists the query parameters each route takes; a route not
// listed takes none. Handler refuses any other parameter before the
// handler runs, so that a misspelt or unsupported one (GET
// /v1/audit?since=...) is an error, never silently ignored: a filter that
// is dropped selects more than its caller meant.
func queryParams(pattern string) []string {
	switch pattern {
	case "GET /v1/certificates":
		return wire.CertParamNames()
	case "GET /v1/certificates/summary":
		// The handler refuses the paging parameters with its own message.
		return append(wire.CertParamNames(), "by")
	case "GET /v1/certificates/export":
		return append(wire.CertParamNames(), "format")
	case "GET /v1/audit":
		return []string{"action", "actor", "target", "after", "before", "cursor", "limit"}
	case "GET /v1/audit/export":
		return []string{"since", "format"}
	case "GET /v1/log/sth":
		return []string{"size"}
	case "GET /v1/log/proof/inclusion":
		return []string{"serial", "tree_size"}
	case "GET /v1/log/proof/consistency":
		return []string{"first", "second"}
	case "GET /v1/log/entries":
		return []string{"start", "end"}
	case "GET /v1/managed":
		return []string{"cursor", "limit", "deleted"}
	case "DELETE /v1/managed/{name}":
		return []string{"destroy_keys"}
	}
	return nil
}

// onlyQuery refuses a request whose query does not parse or names a
// parameter outside params (400, naming them), then runs h.
func onlyQuery(params []string, h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p ca.Principal) error {
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			return &ca.Error{Kind: ca.Malformed, Detail: "the query string does not parse: " + err.Error()}
		}
		var unknown []string
		for k := range q {
			if !slices.Contains(params, k) {
				unknown = append(unknown, k)
			}
		}
		if len(unknown) == 0 {
			return h(w, r, p)
		}
		slices.Sort(unknown)
		const most = 5 // a query may hold thousands; the first few make the point
		names := make([]string, 0, most)
		for _, k := range unknown[:min(len(unknown), most)] {
			if len(k) > 64 {
				k = k[:64] + "..."
			}
			names = append(names, strconv.Quote(k))
		}
		if len(unknown) > most {
			names = append(names, fmt.Sprintf("and %d more", len(unknown)-most))
		}
		takes := "no query parameters"
		if len(params) > 0 {
			takes = "only " + strings.Join(params, ", ")
		}
		word := "parameter"
		if len(unknown) > 1 {
			word = "parameters"
		}
		return &ca.Error{Kind: ca.Malformed, Detail: fmt.Sprintf("unknown query %s %s: %s takes %s", word, strings.Join(names, ", "), r.URL.Path, takes)}
	}
}
