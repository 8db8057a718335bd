package postgres_test

import (
	"context"
	"testing"

	"github.com/sigil-ca/sigil/store"
	"github.com/sigil-ca/sigil/store/postgres"
	"github.com/sigil-ca/sigil/store/postgres/pgtest"
	"github.com/sigil-ca/sigil/store/storetest"
)

// TestContract runs the backend contract suite against PostgreSQL, each
// test on a new database.
func TestContract(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, o storetest.Options) (store.Store, error) {
		s, err := postgres.Open(context.Background(), postgres.Config{DSN: pgtest.NewDatabase(t), Clock: o.Clock, MaxConns: 4})
		if err != nil {
			return nil, err
		}
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		if o.Checkpointer != nil {
			s.SetCheckpointer(*o.Checkpointer)
		}
		return s, nil
	})
}
