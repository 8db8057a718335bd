package store

import (
	"context"
	"fmt"
	"time"
)

// Database roles a store reports in its health.
const (
	// RoleEmbedded is a SQLite file: one node, reads and writes.
	RoleEmbedded = "embedded"
	// RolePrimary is a PostgreSQL server that takes writes.
	RolePrimary = "primary"
	// RoleStandby is a PostgreSQL hot standby: reads only, replaying the
	// primary's changes Lag behind.
	RoleStandby = "standby"
	// RoleUnreachable is a database that did not answer.
	RoleUnreachable = "unreachable"
)

// Health is what a store says of its database at one moment.
type Health struct {
	Role string
	// Lag is how far a standby's replay is behind the primary's last
	// commit it has seen (0 for other roles).
	Lag time.Duration
}

// Health reads one row to show the file answers.
func (s *SQLite) Health(ctx context.Context) (Health, error) {
	var one int
	if err := s.read.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return Health{Role: RoleUnreachable}, fmt.Errorf("store health: %w", err)
	}
	return Health{Role: RoleEmbedded}, nil
}
