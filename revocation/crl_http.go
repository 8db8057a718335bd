package revocation

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Handler serves the CRLs from memory: GET (and HEAD) /crl/{issuer}.crl, the
// whole CRL, and /crl/{issuer}/{shard}.crl, one partition, as DER
// application/pkix-crl with ETag and Last-Modified (conditional GETs get
// 304) and a Cache-Control max-age that ends at nextUpdate.
func (p *Publisher) Handler() http.Handler { return crlMux(p.serve) }

// crlMux routes GET (and HEAD) /crl/{issuer}.crl to serve with shard 0 and
// /crl/{issuer}/{shard}.crl with shard; anything else under /crl/ is 404.
func crlMux(serve func(w http.ResponseWriter, r *http.Request, issuer string, shard int)) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /crl/{file}", func(w http.ResponseWriter, r *http.Request) {
		issuer, ok := strings.CutSuffix(r.PathValue("file"), ".crl")
		if !ok {
			http.NotFound(w, r)
			return
		}
		serve(w, r, issuer, 0)
	})
	mux.HandleFunc("GET /crl/{issuer}/{file}", func(w http.ResponseWriter, r *http.Request) {
		s, ok := strings.CutSuffix(r.PathValue("file"), ".crl")
		shard, err := strconv.Atoi(s)
		// Only the canonical spelling a certificate's CDP carries.
		if !ok || err != nil || shard < 1 || strconv.Itoa(shard) != s {
			http.NotFound(w, r)
			return
		}
		serve(w, r, r.PathValue("issuer"), shard)
	})
	return mux
}

func (p *Publisher) serve(w http.ResponseWriter, r *http.Request, issuer string, shard int) {
	p.mu.RLock()
	var c published
	ic, ok := p.issuers[issuer]
	if ok {
		c, ok = ic.crls[shard]
	}
	p.mu.RUnlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	c.write(w, r, p.clk.Now())
}

// write serves c as DER application/pkix-crl, with its ETag, Last-Modified
// (its thisUpdate) and a Cache-Control max-age that ends at its nextUpdate.
func (c published) write(w http.ResponseWriter, r *http.Request, now time.Time) {
	maxAge := int64(c.rec.NextUpdate.Sub(now) / time.Second)
	if maxAge < 0 {
		maxAge = 0
	}
	h := w.Header()
	h.Set("Content-Type", "application/pkix-crl")
	h.Set("Cache-Control", "public, max-age="+strconv.FormatInt(maxAge, 10))
	h.Set("Expires", c.rec.NextUpdate.UTC().Format(http.TimeFormat))
	h.Set("ETag", c.etag)
	// ServeContent answers If-None-Match / If-Modified-Since with 304, sets
	// Last-Modified and serves HEAD and ranges.
	http.ServeContent(w, r, "", c.rec.ThisUpdate, bytes.NewReader(c.rec.DER))
}
