package ca

import (
	"errors"
	"fmt"
	"testing"
)

func TestAsError(t *testing.T) {
	t.Parallel()
	typed := &Error{Kind: Conflict, Detail: "already revoked"}
	tests := []struct {
		name   string
		err    error
		want   *Error
		wantOK bool
	}{
		{"nil", nil, nil, false},
		{"untyped", errors.New("disk full"), nil, false},
		{"typed", typed, typed, true},
		{"wrapped", fmt.Errorf("revoke: %w", typed), typed, true},
		{"wrapped twice", fmt.Errorf("acme: %w", fmt.Errorf("revoke: %w", typed)), typed, true},
		{"joined", errors.Join(errors.New("other"), typed), typed, true},
		{"typed nil", (*Error)(nil), nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := AsError(tt.err)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("AsError(%v) = %v, %v; want %v, %v", tt.err, got, ok, tt.want, tt.wantOK)
			}
			wantKind := Internal
			if tt.wantOK {
				wantKind = tt.want.Kind
			}
			if k := KindOf(tt.err); k != wantKind {
				t.Errorf("KindOf(%v) = %v, want %v", tt.err, k, wantKind)
			}
		})
	}
}
