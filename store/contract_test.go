package store_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/sigil-ca/sigil/store"
	"github.com/sigil-ca/sigil/store/storetest"
)

// TestContract runs the backend contract suite against SQLite, each test on
// a new database file.
func TestContract(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, o storetest.Options) (store.Store, error) {
		s, err := store.Open(context.Background(), store.Config{Path: filepath.Join(t.TempDir(), "sigil.db"), Clock: o.Clock})
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
		return fillable{s}, nil
	})
}

// fillable is a SQLite store the suite can fill (storetest.Filler).
type fillable struct{ *store.SQLite }

func (f fillable) SetFull(full bool) error {
	return store.SetFull(context.Background(), f.SQLite, full)
}
