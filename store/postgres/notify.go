package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// statusChannel is the LISTEN/NOTIFY channel of certificate status
// changes; each payload is "INSTANCE SERIAL".
const statusChannel = "sigil_status"

// watchRetry is how long WatchStatus waits before listening again after
// its connection failed.
const watchRetry = time.Second

// WatchStatus calls changed with the serial of every certificate another
// store on this database (another node) revoked or released from hold,
// once that node's transaction commits, until ctx ends. Notifications
// sent while this node was not listening are lost: resync is called each
// time listening (re)starts, the first time included, so the caller can
// catch up from the records. Callbacks run on WatchStatus's goroutine.
func (s *Store) WatchStatus(ctx context.Context, changed func(serial string), resync func()) {
	for ctx.Err() == nil {
		err := s.listen(ctx, changed, resync)
		if ctx.Err() != nil {
			return
		}
		s.gc.log.WarnContext(ctx, "listening for status changes of other nodes failed; listening again", "error", err, "in", watchRetry)
		select {
		case <-ctx.Done():
			return
		case <-time.After(watchRetry): // a reconnection pause, not a schedule
		}
	}
}

func (s *Store) listen(ctx context.Context, changed func(string), resync func()) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// The session ends with the connection: it does not go back to the
	// pool still listening.
	defer func() {
		_ = conn.Conn().Close(context.Background())
		conn.Release()
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+statusChannel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	resync()
	for {
		n, err := conn.Conn().WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		instance, serial, ok := strings.Cut(n.Payload, " ")
		if !ok || instance == s.gc.instance || serial == "" {
			continue
		}
		changed(serial)
	}
}
