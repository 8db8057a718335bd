package acme

// problemAttrs are the log attributes saying why a request was refused:
// the problem document the client got, which holds nothing the client
// may not see (internal errors are logged apart). reqlog bounds the
// detail, which can quote what the client sent.
func problemAttrs(p *Problem) []any {
	if p == nil {
		return nil
	}
	attrs := []any{"problem_type", p.Type, "problem_detail", p.Detail}
	if n := len(p.Subproblems); n > 0 {
		attrs = append(attrs, "subproblems", n)
	}
	return attrs
}
