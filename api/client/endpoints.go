package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/lifecycle/managed"
)

// Sign is POST /v1/sign; the server answers 201 Created and nothing else
// on success.
func (c *Client) Sign(ctx context.Context, req api.SignRequest) (api.SignResponse, error) {
	return call[api.SignResponse](ctx, c, http.MethodPost, "/v1/sign", req, http.StatusCreated)
}

// Renew is POST /v1/renew, authenticated by the client certificate the
// HTTP client presents. repeated reports a 200: the successor issued
// earlier, not a new one (201).
func (c *Client) Renew(ctx context.Context, req api.RenewRequest) (resp api.SignResponse, repeated bool, err error) {
	code, err := c.do(ctx, http.MethodPost, "/v1/renew", req, &resp, http.StatusCreated, http.StatusOK)
	return resp, code == http.StatusOK, err
}

// Certificate is GET /v1/certificates/{serial}.
func (c *Client) Certificate(ctx context.Context, serial string) (api.Certificate, error) {
	return call[api.Certificate](ctx, c, http.MethodGet, "/v1/certificates/"+url.PathEscape(serial), nil)
}

// Certificates is one page of GET /v1/certificates?q.
func (c *Client) Certificates(ctx context.Context, q url.Values) (api.CertificateList, error) {
	return call[api.CertificateList](ctx, c, http.MethodGet, withQuery("/v1/certificates", q), nil)
}

// CertificateSummary is GET /v1/certificates/summary?q.
func (c *Client) CertificateSummary(ctx context.Context, q url.Values) (api.CertificateSummary, error) {
	return call[api.CertificateSummary](ctx, c, http.MethodGet, withQuery("/v1/certificates/summary", q), nil)
}

// ExportCertificates streams GET /v1/certificates/export?q (see Stream).
func (c *Client) ExportCertificates(ctx context.Context, q url.Values) (*http.Response, error) {
	return c.Stream(ctx, withQuery("/v1/certificates/export", q))
}

// Revoke is POST /v1/revoke.
func (c *Client) Revoke(ctx context.Context, req api.RevokeRequest) (api.Certificate, error) {
	return call[api.Certificate](ctx, c, http.MethodPost, "/v1/revoke", req)
}

// BulkRevoke is POST /v1/certificates/revoke.
func (c *Client) BulkRevoke(ctx context.Context, req api.BulkRevokeRequest) (api.BulkRevokeResult, error) {
	return call[api.BulkRevokeResult](ctx, c, http.MethodPost, "/v1/certificates/revoke", req)
}

// Unhold is POST /v1/unhold.
func (c *Client) Unhold(ctx context.Context, req api.UnholdRequest) (api.Certificate, error) {
	return call[api.Certificate](ctx, c, http.MethodPost, "/v1/unhold", req)
}

// Audit is one page of GET /v1/audit?q.
func (c *Client) Audit(ctx context.Context, q url.Values) (api.AuditList, error) {
	return call[api.AuditList](ctx, c, http.MethodGet, withQuery("/v1/audit", q), nil)
}

// ExportAudit streams GET /v1/audit/export?q (see Stream).
func (c *Client) ExportAudit(ctx context.Context, q url.Values) (*http.Response, error) {
	return c.Stream(ctx, withQuery("/v1/audit/export", q))
}

// Keys is GET /v1/keys.
func (c *Client) Keys(ctx context.Context) (api.KeyList, error) {
	return call[api.KeyList](ctx, c, http.MethodGet, "/v1/keys", nil)
}

// Key is GET /v1/keys/{id}/attestation: one key with its live
// attestation. (/v1/keys/{id} alone would take GET /v1/keys/rewrap, which
// must stay a 405.)
func (c *Client) Key(ctx context.Context, id string) (ca.KeyDetail, error) {
	return call[ca.KeyDetail](ctx, c, http.MethodGet, "/v1/keys/"+url.PathEscape(id)+"/attestation", nil)
}

// Rewrap is POST /v1/keys/rewrap.
func (c *Client) Rewrap(ctx context.Context, req api.RewrapRequest) (api.RewrapResponse, error) {
	return call[api.RewrapResponse](ctx, c, http.MethodPost, "/v1/keys/rewrap", req)
}

// BlockKey is POST /v1/keys/block.
func (c *Client) BlockKey(ctx context.Context, req api.BlockKeyRequest) (api.BlockKeyResponse, error) {
	return call[api.BlockKeyResponse](ctx, c, http.MethodPost, "/v1/keys/block", req)
}

// Tokens is GET /v1/tokens.
func (c *Client) Tokens(ctx context.Context) (api.TokenList, error) {
	return call[api.TokenList](ctx, c, http.MethodGet, "/v1/tokens", nil)
}

// CreateToken is POST /v1/tokens; the answer holds the secret, once.
func (c *Client) CreateToken(ctx context.Context, req api.TokenRequest) (api.Token, error) {
	return call[api.Token](ctx, c, http.MethodPost, "/v1/tokens", req)
}

// RevokeToken is DELETE /v1/tokens/{id}.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	_, err := c.do(ctx, http.MethodDelete, "/v1/tokens/"+url.PathEscape(id), nil, nil)
	return err
}

// CreateEAB is POST /v1/acme/eab.
func (c *Client) CreateEAB(ctx context.Context, req api.EABRequest) (api.EABKey, error) {
	return call[api.EABKey](ctx, c, http.MethodPost, "/v1/acme/eab", req)
}

// Jobs is GET /v1/jobs.
func (c *Client) Jobs(ctx context.Context) (api.JobList, error) {
	return call[api.JobList](ctx, c, http.MethodGet, "/v1/jobs", nil)
}

// Job is GET /v1/jobs/{name}.
func (c *Client) Job(ctx context.Context, name string) (api.JobDetail, error) {
	return call[api.JobDetail](ctx, c, http.MethodGet, "/v1/jobs/"+url.PathEscape(name), nil)
}

// RunJob is POST /v1/jobs/{name}/run.
func (c *Client) RunJob(ctx context.Context, name string) (api.JobStarted, error) {
	return call[api.JobStarted](ctx, c, http.MethodPost, "/v1/jobs/"+url.PathEscape(name)+"/run", nil)
}

// CreateManaged is POST /v1/managed.
func (c *Client) CreateManaged(ctx context.Context, req api.ManagedRequest) (managed.Cert, error) {
	return call[managed.Cert](ctx, c, http.MethodPost, "/v1/managed", req)
}

// ListManaged is one page of GET /v1/managed?q.
func (c *Client) ListManaged(ctx context.Context, q url.Values) (api.ManagedList, error) {
	return call[api.ManagedList](ctx, c, http.MethodGet, withQuery("/v1/managed", q), nil)
}

// Managed is GET /v1/managed/{name}.
func (c *Client) Managed(ctx context.Context, name string) (managed.Cert, error) {
	return call[managed.Cert](ctx, c, http.MethodGet, "/v1/managed/"+url.PathEscape(name), nil)
}

// DeleteManaged is DELETE /v1/managed/{name}, with ?destroy_keys=true
// when destroyKeys is set.
func (c *Client) DeleteManaged(ctx context.Context, name string, destroyKeys bool) (managed.Cert, error) {
	path := "/v1/managed/" + url.PathEscape(name)
	if destroyKeys {
		path += "?destroy_keys=" + strconv.FormatBool(true)
	}
	return call[managed.Cert](ctx, c, http.MethodDelete, path, nil)
}

// RenewManaged is POST /v1/managed/{name}/renew (200).
func (c *Client) RenewManaged(ctx context.Context, name string) (managed.Cert, error) {
	return call[managed.Cert](ctx, c, http.MethodPost, "/v1/managed/"+url.PathEscape(name)+"/renew", nil, http.StatusOK)
}

// ManagedBundle is GET /v1/managed/{name}/bundle (200): chain and private
// key.
func (c *Client) ManagedBundle(ctx context.Context, name string) (api.BundleResponse, error) {
	return call[api.BundleResponse](ctx, c, http.MethodGet, "/v1/managed/"+url.PathEscape(name)+"/bundle", nil, http.StatusOK)
}

// Intermediates is GET /v1/ca/intermediates.
func (c *Client) Intermediates(ctx context.Context) (api.IntermediateList, error) {
	return call[api.IntermediateList](ctx, c, http.MethodGet, "/v1/ca/intermediates", nil)
}

// RotateIntermediate is POST /v1/ca/intermediates/rotate.
func (c *Client) RotateIntermediate(ctx context.Context, req api.RotateRequest) (api.Rotation, error) {
	return call[api.Rotation](ctx, c, http.MethodPost, "/v1/ca/intermediates/rotate", req)
}

// TreeHead is GET /v1/log/sth?q (q may name a tree_size).
func (c *Client) TreeHead(ctx context.Context, q url.Values) (api.TreeHead, error) {
	return call[api.TreeHead](ctx, c, http.MethodGet, withQuery("/v1/log/sth", q), nil)
}

// InclusionProof is GET /v1/log/proof/inclusion?q.
func (c *Client) InclusionProof(ctx context.Context, q url.Values) (api.InclusionProof, error) {
	return call[api.InclusionProof](ctx, c, http.MethodGet, withQuery("/v1/log/proof/inclusion", q), nil)
}

// ConsistencyProof is GET /v1/log/proof/consistency?q.
func (c *Client) ConsistencyProof(ctx context.Context, q url.Values) (api.ConsistencyProof, error) {
	return call[api.ConsistencyProof](ctx, c, http.MethodGet, withQuery("/v1/log/proof/consistency", q), nil)
}

// LogEntries is GET /v1/log/entries?q.
func (c *Client) LogEntries(ctx context.Context, q url.Values) (api.LogEntries, error) {
	return call[api.LogEntries](ctx, c, http.MethodGet, withQuery("/v1/log/entries", q), nil)
}

// call is one request whose answer decodes into a T: each endpoint above
// is its route and types.
func call[T any](ctx context.Context, c *Client, method, path string, in any, want ...int) (T, error) {
	var out T
	_, err := c.do(ctx, method, path, in, &out, want...)
	return out, err
}
