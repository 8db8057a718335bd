package acme

// maxLoggedDetail bounds a problem detail in the log: details can quote
// what the client sent.
const maxLoggedDetail = 512

// problemAttrs are the log attributes saying why a request was refused:
// the problem document the client got, which holds nothing the client
// may not see (internal errors are logged apart, by the adapter).
func problemAttrs(p *Problem) []any {
	if p == nil {
		return nil
	}
	detail := p.Detail
	if len(detail) > maxLoggedDetail {
		detail = detail[:maxLoggedDetail] + "..."
	}
	attrs := []any{"problem_type", p.Type, "problem_detail", detail}
	if n := len(p.Subproblems); n > 0 {
		attrs = append(attrs, "subproblems", n)
	}
	return attrs
}
