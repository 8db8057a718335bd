package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/sigil-ca/sigil/api"
	"github.com/sigil-ca/sigil/lifecycle/managed"
)

// Sign is POST /v1/sign; the server answers 201 Created and nothing else
// on success.
func (c *Client) Sign(ctx context.Context, req api.SignRequest) (api.SignResponse, error) {
	var out api.SignResponse
	_, err := c.do(ctx, http.MethodPost, "/v1/sign", req, &out, http.StatusCreated)
	return out, err
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
	var out api.Certificate
	_, err := c.do(ctx, http.MethodGet, "/v1/certificates/"+url.PathEscape(serial), nil, &out)
	return out, err
}

// Certificates is one page of GET /v1/certificates?q.
func (c *Client) Certificates(ctx context.Context, q url.Values) (api.CertificateList, error) {
	var out api.CertificateList
	_, err := c.do(ctx, http.MethodGet, withQuery("/v1/certificates", q), nil, &out)
	return out, err
}

// CertificateSummary is GET /v1/certificates/summary?q.
func (c *Client) CertificateSummary(ctx context.Context, q url.Values) (api.CertificateSummary, error) {
	var out api.CertificateSummary
	_, err := c.do(ctx, http.MethodGet, withQuery("/v1/certificates/summary", q), nil, &out)
	return out, err
}

// ExportCertificates streams GET /v1/certificates/export?q (see Stream).
func (c *Client) ExportCertificates(ctx context.Context, q url.Values) (*http.Response, error) {
	return c.Stream(ctx, withQuery("/v1/certificates/export", q))
}

// Revoke is POST /v1/revoke.
func (c *Client) Revoke(ctx context.Context, req api.RevokeRequest) (api.Certificate, error) {
	var out api.Certificate
	_, err := c.do(ctx, http.MethodPost, "/v1/revoke", req, &out)
	return out, err
}

// BulkRevoke is POST /v1/certificates/revoke.
func (c *Client) BulkRevoke(ctx context.Context, req api.BulkRevokeRequest) (api.BulkRevokeResult, error) {
	var out api.BulkRevokeResult
	_, err := c.do(ctx, http.MethodPost, "/v1/certificates/revoke", req, &out)
	return out, err
}

// Unhold is POST /v1/unhold.
func (c *Client) Unhold(ctx context.Context, req api.UnholdRequest) (api.Certificate, error) {
	var out api.Certificate
	_, err := c.do(ctx, http.MethodPost, "/v1/unhold", req, &out)
	return out, err
}

// Audit is one page of GET /v1/audit?q.
func (c *Client) Audit(ctx context.Context, q url.Values) (api.AuditList, error) {
	var out api.AuditList
	_, err := c.do(ctx, http.MethodGet, withQuery("/v1/audit", q), nil, &out)
	return out, err
}

// ExportAudit streams GET /v1/audit/export?q (see Stream).
func (c *Client) ExportAudit(ctx context.Context, q url.Values) (*http.Response, error) {
	return c.Stream(ctx, withQuery("/v1/audit/export", q))
}

// Keys is GET /v1/keys.
func (c *Client) Keys(ctx context.Context) (api.KeyList, error) {
	var out api.KeyList
	_, err := c.do(ctx, http.MethodGet, "/v1/keys", nil, &out)
	return out, err
}

// Rewrap is POST /v1/keys/rewrap.
func (c *Client) Rewrap(ctx context.Context, req api.RewrapRequest) (api.RewrapResponse, error) {
	var out api.RewrapResponse
	_, err := c.do(ctx, http.MethodPost, "/v1/keys/rewrap", req, &out)
	return out, err
}

// BlockKey is POST /v1/keys/block.
func (c *Client) BlockKey(ctx context.Context, req api.BlockKeyRequest) (api.BlockKeyResponse, error) {
	var out api.BlockKeyResponse
	_, err := c.do(ctx, http.MethodPost, "/v1/keys/block", req, &out)
	return out, err
}

// Tokens is GET /v1/tokens.
func (c *Client) Tokens(ctx context.Context) (api.TokenList, error) {
	var out api.TokenList
	_, err := c.do(ctx, http.MethodGet, "/v1/tokens", nil, &out)
	return out, err
}

// CreateToken is POST /v1/tokens; the answer holds the secret, once.
func (c *Client) CreateToken(ctx context.Context, req api.TokenRequest) (api.Token, error) {
	var out api.Token
	_, err := c.do(ctx, http.MethodPost, "/v1/tokens", req, &out)
	return out, err
}

// RevokeToken is DELETE /v1/tokens/{id}.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	_, err := c.do(ctx, http.MethodDelete, "/v1/tokens/"+url.PathEscape(id), nil, nil)
	return err
}

// CreateEAB is POST /v1/acme/eab.
func (c *Client) CreateEAB(ctx context.Context, req api.EABRequest) (api.EABKey, error) {
	var out api.EABKey
	_, err := c.do(ctx, http.MethodPost, "/v1/acme/eab", req, &out)
	return out, err
}

// Jobs is GET /v1/jobs.
func (c *Client) Jobs(ctx context.Context) (api.JobList, error) {
	var out api.JobList
	_, err := c.do(ctx, http.MethodGet, "/v1/jobs", nil, &out)
	return out, err
}

// Job is GET /v1/jobs/{name}.
func (c *Client) Job(ctx context.Context, name string) (api.JobDetail, error) {
	var out api.JobDetail
	_, err := c.do(ctx, http.MethodGet, "/v1/jobs/"+url.PathEscape(name), nil, &out)
	return out, err
}

// RunJob is POST /v1/jobs/{name}/run.
func (c *Client) RunJob(ctx context.Context, name string) (api.JobStarted, error) {
	var out api.JobStarted
	_, err := c.do(ctx, http.MethodPost, "/v1/jobs/"+url.PathEscape(name)+"/run", nil, &out)
	return out, err
}

// CreateManaged is POST /v1/managed.
func (c *Client) CreateManaged(ctx context.Context, req api.ManagedRequest) (managed.Cert, error) {
	var out managed.Cert
	_, err := c.do(ctx, http.MethodPost, "/v1/managed", req, &out)
	return out, err
}

// ListManaged is one page of GET /v1/managed?q.
func (c *Client) ListManaged(ctx context.Context, q url.Values) (api.ManagedList, error) {
	var out api.ManagedList
	_, err := c.do(ctx, http.MethodGet, withQuery("/v1/managed", q), nil, &out)
	return out, err
}

// Managed is GET /v1/managed/{name}.
func (c *Client) Managed(ctx context.Context, name string) (managed.Cert, error) {
	var out managed.Cert
	_, err := c.do(ctx, http.MethodGet, "/v1/managed/"+url.PathEscape(name), nil, &out)
	return out, err
}

// DeleteManaged is DELETE /v1/managed/{name}, with ?destroy_keys=true
// when destroyKeys is set.
func (c *Client) DeleteManaged(ctx context.Context, name string, destroyKeys bool) (managed.Cert, error) {
	path := "/v1/managed/" + url.PathEscape(name)
	if destroyKeys {
		path += "?destroy_keys=" + strconv.FormatBool(true)
	}
	var out managed.Cert
	_, err := c.do(ctx, http.MethodDelete, path, nil, &out)
	return out, err
}

// RenewManaged is POST /v1/managed/{name}/renew (200).
func (c *Client) RenewManaged(ctx context.Context, name string) (managed.Cert, error) {
	var out managed.Cert
	_, err := c.do(ctx, http.MethodPost, "/v1/managed/"+url.PathEscape(name)+"/renew", nil, &out, http.StatusOK)
	return out, err
}

// ManagedBundle is GET /v1/managed/{name}/bundle (200): chain and private
// key.
func (c *Client) ManagedBundle(ctx context.Context, name string) (api.BundleResponse, error) {
	var out api.BundleResponse
	_, err := c.do(ctx, http.MethodGet, "/v1/managed/"+url.PathEscape(name)+"/bundle", nil, &out, http.StatusOK)
	return out, err
}

// Intermediates is GET /v1/ca/intermediates.
func (c *Client) Intermediates(ctx context.Context) (api.IntermediateList, error) {
	var out api.IntermediateList
	_, err := c.do(ctx, http.MethodGet, "/v1/ca/intermediates", nil, &out)
	return out, err
}

// RotateIntermediate is POST /v1/ca/intermediates/rotate.
func (c *Client) RotateIntermediate(ctx context.Context, req api.RotateRequest) (api.Rotation, error) {
	var out api.Rotation
	_, err := c.do(ctx, http.MethodPost, "/v1/ca/intermediates/rotate", req, &out)
	return out, err
}

// TreeHead is GET /v1/log/sth?q (q may name a tree_size).
func (c *Client) TreeHead(ctx context.Context, q url.Values) (api.TreeHead, error) {
	var out api.TreeHead
	_, err := c.do(ctx, http.MethodGet, withQuery("/v1/log/sth", q), nil, &out)
	return out, err
}

// InclusionProof is GET /v1/log/proof/inclusion?q.
func (c *Client) InclusionProof(ctx context.Context, q url.Values) (api.InclusionProof, error) {
	var out api.InclusionProof
	_, err := c.do(ctx, http.MethodGet, withQuery("/v1/log/proof/inclusion", q), nil, &out)
	return out, err
}

// ConsistencyProof is GET /v1/log/proof/consistency?q.
func (c *Client) ConsistencyProof(ctx context.Context, q url.Values) (api.ConsistencyProof, error) {
	var out api.ConsistencyProof
	_, err := c.do(ctx, http.MethodGet, withQuery("/v1/log/proof/consistency", q), nil, &out)
	return out, err
}

// LogEntries is GET /v1/log/entries?q.
func (c *Client) LogEntries(ctx context.Context, q url.Values) (api.LogEntries, error) {
	var out api.LogEntries
	_, err := c.do(ctx, http.MethodGet, withQuery("/v1/log/entries", q), nil, &out)
	return out, err
}
