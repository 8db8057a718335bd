package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/store"
)

// TransparencyLog is what the /v1/log endpoints call in ca (ca.Log).
type TransparencyLog interface {
	TreeHead(ctx context.Context, size uint64, latest bool) (ca.SignedTreeHead, error)
	InclusionProof(ctx context.Context, serial string, treeSize uint64) (ca.Inclusion, error)
	ConsistencyProof(ctx context.Context, first, second uint64) ([][]byte, error)
	LogEntries(ctx context.Context, start, end uint64) ([]store.LogEntry, error)
}

// DefaultLogEntries is the /v1/log/entries page when end is not given;
// store.MaxLogEntries bounds any page.
const DefaultLogEntries = 100

// maxTreeSize is the largest size a parameter may name: sizes and indexes
// are stored as signed 64-bit integers.
const maxTreeSize = 1<<63 - 1

// TreeHead is a signed tree head as /v1/log/sth serves it and as
// `sigil audit sth --out` saves it. Byte fields are standard base64.
type TreeHead struct {
	TreeSize  uint64    `json:"tree_size"`
	RootHash  []byte    `json:"root_hash"`
	Timestamp time.Time `json:"timestamp"`
	KeyID     string    `json:"key_id"`
	Signature []byte    `json:"signature"`
	// SignerCertificate is the DER certificate of the audit key, issued by
	// the root: with the root alone a client can check Signature.
	SignerCertificate []byte `json:"signer_certificate"`
}

// NewTreeHead converts a signed head for the API.
func NewTreeHead(h ca.SignedTreeHead) TreeHead {
	return TreeHead{TreeSize: h.Size, RootHash: h.RootHash, Timestamp: h.Time.UTC(), KeyID: h.KeyID,
		Signature: h.Signature, SignerCertificate: h.SignerCert}
}

// Signed returns the head as ca signs it.
func (t TreeHead) Signed() ca.SignedTreeHead {
	h := ca.SignedTreeHead{SignerCert: t.SignerCertificate}
	h.Size, h.RootHash, h.Time, h.KeyID, h.Signature = t.TreeSize, t.RootHash, t.Timestamp, t.KeyID, t.Signature
	return h
}

// InclusionProof is the /v1/log/proof/inclusion answer: the certificate's
// leaf (audit.LogLeaf) at LeafIndex and the audit path to the root of the
// tree of TreeSize leaves (RFC 9162 §2.1.3).
type InclusionProof struct {
	Serial    string   `json:"serial"`
	LeafIndex uint64   `json:"leaf_index"`
	TreeSize  uint64   `json:"tree_size"`
	Leaf      []byte   `json:"leaf"`
	AuditPath [][]byte `json:"audit_path"`
}

// ConsistencyProof is the /v1/log/proof/consistency answer (RFC 9162 §2.1.4).
type ConsistencyProof struct {
	First  uint64   `json:"first"`
	Second uint64   `json:"second"`
	Proof  [][]byte `json:"proof"`
}

// LogEntry is one leaf as /v1/log/entries lists it.
type LogEntry struct {
	Index  uint64    `json:"index"`
	Serial string    `json:"serial"`
	Issuer string    `json:"issuer"`
	Issued time.Time `json:"issued"`
	Leaf   []byte    `json:"leaf"`
}

// LogEntries is a page of leaves, [start, end).
type LogEntries struct {
	Start   uint64     `json:"start"`
	End     uint64     `json:"end"`
	Entries []LogEntry `json:"entries"`
}

func (api *API) logRoutes(route func(string, handlerFunc, ...string)) {
	// Read-only: auditors and admins. Nothing here changes state; a head
	// is signed by the log-sign job (POST /v1/jobs/log-sign/run on demand).
	route("GET /v1/log/sth", api.getTreeHead, ca.RoleAdmin, ca.RoleAuditor)
	route("GET /v1/log/proof/inclusion", api.getInclusion, ca.RoleAdmin, ca.RoleAuditor)
	route("GET /v1/log/proof/consistency", api.getConsistency, ca.RoleAdmin, ca.RoleAuditor)
	route("GET /v1/log/entries", api.getLogEntries, ca.RoleAdmin, ca.RoleAuditor)
}

func malformed(format string, args ...any) error {
	return &ca.Error{Kind: ca.Malformed, Detail: fmt.Sprintf(format, args...)}
}

// parseSize reads a tree size or index parameter: decimal digits only, at
// most maxTreeSize. ok is false when the parameter is absent.
func parseSize(q url.Values, name string) (n uint64, ok bool, err error) {
	vs, present := q[name]
	if !present {
		return 0, false, nil
	}
	if len(vs) != 1 {
		return 0, false, malformed("%s given %d times", name, len(vs))
	}
	v := vs[0]
	if v == "" {
		return 0, false, malformed("%s is empty", name)
	}
	for _, c := range []byte(v) {
		if c < '0' || c > '9' {
			return 0, false, malformed("%s must be a non-negative decimal integer", name)
		}
	}
	n, err = strconv.ParseUint(v, 10, 63)
	if err != nil || n > maxTreeSize {
		return 0, false, malformed("%s must be at most %d", name, uint64(maxTreeSize))
	}
	return n, true, nil
}

// onlyParams refuses parameters the endpoint does not take, so that a
// misspelt one is an error rather than silently ignored.
func onlyParams(q url.Values, names ...string) error {
	for k := range q {
		known := false
		for _, n := range names {
			known = known || k == n
		}
		if !known {
			return malformed("unknown parameter %q (allowed: %v)", k, names)
		}
	}
	return nil
}

// TreeHeadQuery is a parsed /v1/log/sth query: Latest unless size was given.
type TreeHeadQuery struct {
	Size   uint64
	Latest bool
}

// ParseTreeHeadQuery reads /v1/log/sth's optional size.
func ParseTreeHeadQuery(q url.Values) (TreeHeadQuery, error) {
	if err := onlyParams(q, "size"); err != nil {
		return TreeHeadQuery{}, err
	}
	n, ok, err := parseSize(q, "size")
	if err != nil {
		return TreeHeadQuery{}, err
	}
	return TreeHeadQuery{Size: n, Latest: !ok}, nil
}

// InclusionQuery is a parsed /v1/log/proof/inclusion query; TreeSize 0
// means the latest signed head's size.
type InclusionQuery struct {
	Serial   string
	TreeSize uint64
}

// ParseInclusionQuery reads serial (required, hex as elsewhere) and
// tree_size (optional, at least 1).
func ParseInclusionQuery(q url.Values) (InclusionQuery, error) {
	if err := onlyParams(q, "serial", "tree_size"); err != nil {
		return InclusionQuery{}, err
	}
	if len(q["serial"]) != 1 || q.Get("serial") == "" {
		return InclusionQuery{}, malformed("serial is required, once")
	}
	serial, err := ca.NormalizeSerial(q.Get("serial"))
	if err != nil {
		return InclusionQuery{}, err
	}
	n, ok, err := parseSize(q, "tree_size")
	if err != nil {
		return InclusionQuery{}, err
	}
	if ok && n == 0 {
		return InclusionQuery{}, malformed("tree_size must be at least 1: the empty tree includes nothing")
	}
	return InclusionQuery{Serial: serial, TreeSize: n}, nil
}

// ParseConsistencyQuery reads first and second (both required, first <=
// second).
func ParseConsistencyQuery(q url.Values) (first, second uint64, err error) {
	if err := onlyParams(q, "first", "second"); err != nil {
		return 0, 0, err
	}
	first, ok1, err := parseSize(q, "first")
	if err != nil {
		return 0, 0, err
	}
	second, ok2, err := parseSize(q, "second")
	if err != nil {
		return 0, 0, err
	}
	if !ok1 || !ok2 {
		return 0, 0, malformed("first and second are both required")
	}
	if first > second {
		return 0, 0, malformed("first (%d) must not exceed second (%d)", first, second)
	}
	return first, second, nil
}

// ParseEntriesQuery reads start (required) and end (exclusive; default
// start+DefaultLogEntries), refusing end <= start and pages over
// store.MaxLogEntries.
func ParseEntriesQuery(q url.Values) (start, end uint64, err error) {
	if err := onlyParams(q, "start", "end"); err != nil {
		return 0, 0, err
	}
	start, ok, err := parseSize(q, "start")
	if err != nil {
		return 0, 0, err
	}
	if !ok {
		return 0, 0, malformed("start is required")
	}
	end, ok, err = parseSize(q, "end")
	if err != nil {
		return 0, 0, err
	}
	if !ok {
		end = min(start+DefaultLogEntries, maxTreeSize)
	}
	if end <= start {
		return 0, 0, malformed("end (%d) must exceed start (%d); end is exclusive", end, start)
	}
	if end-start > store.MaxLogEntries {
		return 0, 0, malformed("at most %d entries per request (end - start)", store.MaxLogEntries)
	}
	return start, end, nil
}

func (api *API) getTreeHead(w http.ResponseWriter, r *http.Request, _ ca.Principal) error {
	q, err := ParseTreeHeadQuery(r.URL.Query())
	if err != nil {
		return err
	}
	h, err := api.tlog.TreeHead(r.Context(), q.Size, q.Latest)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, NewTreeHead(h))
	return nil
}

func (api *API) getInclusion(w http.ResponseWriter, r *http.Request, _ ca.Principal) error {
	q, err := ParseInclusionQuery(r.URL.Query())
	if err != nil {
		return err
	}
	inc, err := api.tlog.InclusionProof(r.Context(), q.Serial, q.TreeSize)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, InclusionProof{Serial: inc.Entry.Serial, LeafIndex: inc.Entry.Index, TreeSize: inc.TreeSize,
		Leaf: inc.Entry.Leaf(), AuditPath: inc.Proof})
	return nil
}

func (api *API) getConsistency(w http.ResponseWriter, r *http.Request, _ ca.Principal) error {
	first, second, err := ParseConsistencyQuery(r.URL.Query())
	if err != nil {
		return err
	}
	p, err := api.tlog.ConsistencyProof(r.Context(), first, second)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ConsistencyProof{First: first, Second: second, Proof: p})
	return nil
}

func (api *API) getLogEntries(w http.ResponseWriter, r *http.Request, _ ca.Principal) error {
	start, end, err := ParseEntriesQuery(r.URL.Query())
	if err != nil {
		return err
	}
	es, err := api.tlog.LogEntries(r.Context(), start, end)
	if err != nil {
		return err
	}
	out := LogEntries{Start: start, End: start + uint64(len(es)), Entries: make([]LogEntry, 0, len(es))}
	for _, e := range es {
		out.Entries = append(out.Entries, LogEntry{Index: e.Index, Serial: e.Serial, Issuer: e.IssuerID, Issued: e.Created.UTC(), Leaf: e.Leaf()})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
