package lifecycle

import (
	"context"
	"time"

	"github.com/sigil-ca/sigil/ca"
)

// IntermediateRotateJob is the name of the job IntermediateRotateTask does.
const IntermediateRotateJob = "intermediate-rotate"

// IntermediateAuthority is what the intermediate-rotate job asks of ca.
// ca.Intermediates (ca.Authority.Intermediates) implements it.
type IntermediateAuthority interface {
	RotateIntermediateIfDue(ctx context.Context, actor, at string) (*ca.IntermediateRotation, error)
	RetireIntermediates(ctx context.Context, actor string, grace time.Duration) ([]string, error)
}

// IntermediateRotateTask returns the intermediate-rotate job's work: rotate
// the active intermediate once it reaches rotateAt of its life (see
// ca.ParseLifetimePoint), then destroy the keys of retired intermediates
// whose certificates all expired at least destroyAfter ago. A failed
// rotation skips the destruction until the next run. Items: rotations plus
// destructions. Revocation hears of both through ca.OnIssuersChange.
func IntermediateRotateTask(auth IntermediateAuthority, rotateAt string, destroyAfter time.Duration) Task {
	const actor = "system:" + IntermediateRotateJob
	return func(ctx context.Context) (Result, error) {
		var res Result
		rot, err := auth.RotateIntermediateIfDue(ctx, actor, rotateAt)
		if err != nil {
			return res, err
		}
		if rot != nil {
			res.Items++
		}
		destroyed, err := auth.RetireIntermediates(ctx, actor, destroyAfter)
		res.Items += int64(len(destroyed))
		return res, err
	}
}
