package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/sigil-ca/sigil/store"
)

// Health asks the server whether it is a standby and, if so, how far its
// replay lags: the time since the last transaction it replayed was
// committed on the primary (0 when it has replayed none yet).
func (s *Store) Health(ctx context.Context) (store.Health, error) {
	var standby bool
	var lagSeconds float64
	err := s.pool.QueryRow(ctx, `SELECT pg_is_in_recovery(),
		COALESCE(EXTRACT(EPOCH FROM (now() - pg_last_xact_replay_timestamp())), 0)::float8`).Scan(&standby, &lagSeconds)
	if err != nil {
		return store.Health{Role: store.RoleUnreachable}, fmt.Errorf("postgres store health: %w", err)
	}
	if !standby {
		return store.Health{Role: store.RolePrimary}, nil
	}
	return store.Health{Role: store.RoleStandby, Lag: time.Duration(max(lagSeconds, 0) * float64(time.Second))}, nil
}
