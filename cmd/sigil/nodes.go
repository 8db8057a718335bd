package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/revocation"
	"github.com/sigil-ca/sigil/store"
	"github.com/sigil-ca/sigil/store/postgres"
)

// resyncEvery is how often a node also looks for revocations it may have
// missed (a notification lost while its listening connection was down).
const resyncEvery = time.Minute

// resyncMargin reaches back behind the last look, for revocation times
// stamped by nodes whose clocks run behind this one's.
const resyncMargin = time.Minute

// watchOtherNodes keeps this node's OCSP answers current with revocations
// other nodes on the same PostgreSQL database commit: each is notified
// (LISTEN/NOTIFY) and re-signed here at once; on every (re)connection and
// every resyncEvery, the certificates revoked since the last look are
// re-signed too. It returns a function that stops it.
func watchOtherNodes(pg *postgres.Store, ocsp *revocation.Responder, clk clockwork.Clock, log *slog.Logger) func() {
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var since time.Time // zero until the first listen: the cache was loaded at start
	resync := func() {
		mu.Lock()
		from := since
		since = clk.Now().Add(-resyncMargin)
		mu.Unlock()
		if from.IsZero() {
			return
		}
		n := 0
		err := pg.ScanCertificates(ctx, store.CertFilter{RevokedAfter: from}, func(rec store.CertRecord) error {
			n++
			return ocsp.StatusChangedElsewhere(ctx, rec.Serial)
		})
		if err != nil && ctx.Err() == nil {
			log.WarnContext(ctx, "catching up with other nodes' revocations", "error", err)
		} else if n > 0 {
			log.InfoContext(ctx, "caught up with other nodes' revocations", "certificates", n)
		}
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		pg.WatchStatus(ctx, func(serial string) {
			if err := ocsp.StatusChangedElsewhere(ctx, serial); err != nil && ctx.Err() == nil {
				log.WarnContext(ctx, "another node's revocation", "serial", serial, "error", err)
			}
		}, resync)
	}()
	go func() {
		defer wg.Done()
		t := clk.NewTicker(resyncEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.Chan():
				resync()
			}
		}
	}()
	return func() { cancel(); wg.Wait() }
}
