package api

import "github.com/sigil-ca/sigil/ca"

// KeyList is the answer to GET /v1/keys: the key inventory.
type KeyList struct {
	Keys []ca.KeyInfo `json:"keys"`
}

// TokenList is the answer to GET /v1/tokens. Secrets are never listed.
type TokenList struct {
	Tokens []Token `json:"tokens"`
}

// JobList is the answer to GET /v1/jobs.
type JobList struct {
	Jobs []JobStatus `json:"jobs"`
}

// JobStarted is the answer (202) to POST /v1/jobs/{name}/run: the run has
// started; GET /v1/jobs/{name} shows how it ends.
type JobStarted struct {
	Job     string `json:"job"`
	Started bool   `json:"started"`
}

// IntermediateList is the answer to GET /v1/ca/intermediates.
type IntermediateList struct {
	Intermediates []Intermediate `json:"intermediates"`
}

// ErrorResponse is the body of every /v1 error: a kind (ca.Kind's name,
// such as "not_found"), a detail a person can read, and the per-identifier
// subproblems of a refusal that has them.
type ErrorResponse struct {
	Error       string       `json:"error"`
	Detail      string       `json:"detail"`
	Subproblems []Subproblem `json:"subproblems,omitempty"`
}

// Subproblem is one identifier's part of a refusal.
type Subproblem struct {
	Identifier string `json:"identifier,omitempty"`
	Error      string `json:"error"`
	Detail     string `json:"detail"`
}
