package lifecycle

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sigil-ca/sigil/ca"
)

type fakeIntermediates struct {
	rotate    *ca.IntermediateRotation
	rotateErr error
	destroyed []string
	retireErr error
	calls     []string
	at        string
	grace     time.Duration
}

func (f *fakeIntermediates) RotateIntermediateIfDue(_ context.Context, actor, at string) (*ca.IntermediateRotation, error) {
	f.calls, f.at = append(f.calls, "rotate:"+actor), at
	return f.rotate, f.rotateErr
}

func (f *fakeIntermediates) RetireIntermediates(_ context.Context, actor string, grace time.Duration) ([]string, error) {
	f.calls, f.grace = append(f.calls, "retire:"+actor), grace
	return f.destroyed, f.retireErr
}

func TestIntermediateRotateTask(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	for _, c := range []struct {
		name      string
		f         fakeIntermediates
		wantItems int64
		wantErr   error
		wantCalls int
	}{
		{"nothing due", fakeIntermediates{}, 0, nil, 2},
		{"rotated", fakeIntermediates{rotate: &ca.IntermediateRotation{}}, 1, nil, 2},
		{"rotated and destroyed two", fakeIntermediates{rotate: &ca.IntermediateRotation{}, destroyed: []string{"a", "b"}}, 3, nil, 2},
		{"rotation fails: no destruction", fakeIntermediates{rotateErr: boom}, 0, boom, 1},
		{"destruction fails part way", fakeIntermediates{destroyed: []string{"a"}, retireErr: boom}, 1, boom, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := c.f
			res, err := IntermediateRotateTask(&f, "75%", 36*time.Hour)(context.Background())
			if res.Items != c.wantItems || !errors.Is(err, c.wantErr) || (c.wantErr == nil) != (err == nil) {
				t.Errorf("= %+v, %v; want %d items, %v", res, err, c.wantItems, c.wantErr)
			}
			if len(f.calls) != c.wantCalls || f.calls[0] != "rotate:system:intermediate-rotate" || f.at != "75%" {
				t.Errorf("calls %v at %q", f.calls, f.at)
			}
			if c.wantCalls == 2 && (f.calls[1] != "retire:system:intermediate-rotate" || f.grace != 36*time.Hour) {
				t.Errorf("calls %v grace %s", f.calls, f.grace)
			}
		})
	}
}
