package store

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sigil-ca/sigil/ca/audit"
)

// commitLog records the batch size of every commit the store reports.
type commitLog struct {
	mu    sync.Mutex
	sizes []int
}

func (l *commitLog) observe(_ time.Duration, batch int) {
	l.mu.Lock()
	l.sizes = append(l.sizes, batch)
	l.mu.Unlock()
}

func (l *commitLog) batches() []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.sizes)
}

// holdWriter occupies the writer goroutine with a WithTx whose fn blocks, so
// that later submissions queue and are committed together in the next batch.
// The returned release unblocks it and waits for it to commit; it is also
// registered as a cleanup, so a failing test never leaves Close waiting.
func holdWriter(t *testing.T, s *SQLite) (release func()) {
	t.Helper()
	started := make(chan struct{})
	unblock := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.WithTx(context.Background(), func(Tx) error {
			close(started)
			<-unblock
			return nil
		})
	}()
	<-started
	var once sync.Once
	release = func() {
		once.Do(func() {
			close(unblock)
			if err := <-done; err != nil {
				t.Errorf("held WithTx: %v", err)
			}
		})
	}
	t.Cleanup(release)
	return release
}

// waitQueued waits until n requests wait in the writer's queue. It polls the
// channel length, yielding the processor, rather than sleeping.
func waitQueued(t *testing.T, s *SQLite, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for len(s.gc.reqs) < n {
		if ctx.Err() != nil {
			t.Fatalf("%d requests queued, want %d", len(s.gc.reqs), n)
		}
		runtime.Gosched()
	}
}

// testSigner signs checkpoints with one Ed25519 key and counts what it signs.
type testSigner struct {
	pub  ed25519.PublicKey
	priv ed25519.PrivateKey

	mu    sync.Mutex
	heads []audit.Head
}

func newTestSigner(t testing.TB) *testSigner {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &testSigner{pub: pub, priv: priv}
}

// install makes ts the store's checkpoint signer.
func (ts *testSigner) install(s *SQLite, every int) {
	s.SetCheckpointer(Checkpointer{Every: every, Sign: func(h audit.Head) (audit.Checkpoint, error) {
		ts.mu.Lock()
		ts.heads = append(ts.heads, h)
		ts.mu.Unlock()
		return audit.SignCheckpoint(rand.Reader, ts.priv, "audit-1", h, testStart.Add(time.Duration(h.Seq)*time.Second))
	}})
}

// signed returns how many heads ts has signed.
func (ts *testSigner) signed() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return len(ts.heads)
}

func (ts *testSigner) keys() map[string]crypto.PublicKey {
	return map[string]crypto.PublicKey{"audit-1": ts.pub}
}

func TestGroupCommitConcurrent(t *testing.T) {
	t.Parallel()
	const writers, perWriter = 64, 20
	var log commitLog
	s := openTest(t, Config{OnCommit: log.observe})
	seedIssuers(t, s, "int")

	start := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			<-start
			for i := range perWriter {
				c := testCert("int", fmt.Sprintf("%x", w*1000+i+1))
				c.Requester = fmt.Sprintf("writer:%d", w)
				if err := s.WithTx(context.Background(), func(tx Tx) error { return issue(tx, &c) }); err != nil {
					t.Errorf("writer %d tx %d: %v", w, i, err)
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	ctx := context.Background()
	want := make(map[string]bool)
	for w := range writers {
		for i := range perWriter {
			want[fmt.Sprintf("%x", w*1000+i+1)] = true
		}
	}
	var cursor CertCursor
	got := make(map[string]bool)
	for {
		certs, next, err := s.Certificates(ctx, CertFilter{After: cursor, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range certs {
			if got[c.Serial] || !want[c.Serial] {
				t.Errorf("unexpected or repeated certificate %s", c.Serial)
			}
			got[c.Serial] = true
		}
		if next.IsZero() {
			break
		}
		cursor = next
	}
	if len(got) != writers*perWriter {
		t.Errorf("%d certificates, want %d", len(got), writers*perWriter)
	}

	events := checkChain(t, s, nil)
	if len(events) != writers*perWriter {
		t.Fatalf("%d audit events, want %d", len(events), writers*perWriter)
	}
	// Each writer waits for its commit before the next call, so its own
	// events appear in the order it made them.
	lastSeq := make(map[string]int64)
	for _, e := range events {
		if e.Seq <= lastSeq[e.Actor] {
			t.Errorf("%s: event %d after %d", e.Actor, e.Seq, lastSeq[e.Actor])
		}
		lastSeq[e.Actor] = e.Seq
	}

	sizes := log.batches()
	total, largest := 0, 0
	for _, n := range sizes {
		total += n
		largest = max(largest, n)
	}
	if total != writers*perWriter+1 { // +1: seedIssuers
		t.Errorf("OnCommit batch sizes sum to %d, want %d", total, writers*perWriter+1)
	}
	if largest < 2 {
		t.Errorf("largest batch %d across %d commits: concurrent writers were never batched", largest, len(sizes))
	}
	t.Logf("%d commits for %d transactions, largest batch %d", len(sizes), total, largest)
	if v, err := s.IntegrityCheck(ctx); err != nil || v != "ok" {
		t.Errorf("IntegrityCheck = %q, %v", v, err)
	}
}

// TestSavepointIsolation puts one failing function in the middle of a batch
// with succeeding ones: only its writes roll back, and the audit head it
// advanced rolls back with them, so the chain has no gap.
func TestSavepointIsolation(t *testing.T) {
	t.Parallel()
	errBoom := errors.New("boom")
	tests := []struct {
		name    string
		fail    func(tx Tx, c *CertRecord) error
		wantErr func(error) bool
	}{
		{
			name:    "error after writes",
			fail:    func(tx Tx, c *CertRecord) error { return errors.Join(issue(tx, c), errBoom) },
			wantErr: func(err error) bool { return errors.Is(err, errBoom) },
		},
		{
			name: "duplicate serial after audit",
			fail: func(tx Tx, c *CertRecord) error {
				if _, err := tx.AppendAudit(issueEvent(c)); err != nil {
					return err
				}
				dup := testCert("int", "1") // committed by the first succeeding function
				return tx.InsertCertificate(&dup)
			},
			wantErr: func(err error) bool { return errors.Is(err, ErrDuplicate) },
		},
		{
			name: "panic after writes",
			fail: func(tx Tx, c *CertRecord) error {
				if err := issue(tx, c); err != nil {
					return err
				}
				panic("boom")
			},
			wantErr: func(err error) bool { return err != nil && strings.Contains(err.Error(), "panicked") },
		},
		{
			name: "several audit events then error",
			fail: func(tx Tx, c *CertRecord) error {
				for range 3 {
					if _, err := tx.AppendAudit(issueEvent(c)); err != nil {
						return err
					}
				}
				return errBoom
			},
			wantErr: func(err error) bool { return errors.Is(err, errBoom) },
		},
	}
	const batch, failing = 5, 2 // the failing function runs third of five
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var log commitLog
			s := openTest(t, Config{OnCommit: log.observe})
			seedIssuers(t, s, "int")
			release := holdWriter(t, s)

			errs := make([]chan error, batch)
			for i := range batch {
				errs[i] = make(chan error, 1)
				c := testCert("int", fmt.Sprint(i+1))
				fn := func(tx Tx) error { return issue(tx, &c) }
				if i == failing {
					fn = func(tx Tx) error { return tt.fail(tx, &c) }
				}
				go func() { errs[i] <- s.WithTx(context.Background(), fn) }()
				waitQueued(t, s, i+1) // one at a time: queue order is batch order
			}
			release()

			for i := range batch {
				err := <-errs[i]
				switch {
				case i == failing && !tt.wantErr(err):
					t.Errorf("failing fn: WithTx = %v", err)
				case i != failing && err != nil:
					t.Errorf("fn %d: WithTx = %v, want nil", i, err)
				}
			}
			if got, want := log.batches(), []int{1, 1, batch}; !slices.Equal(got, want) {
				t.Errorf("batch sizes = %v, want %v (seed, held, batch)", got, want)
			}

			ctx := context.Background()
			for i := range batch {
				serial := fmt.Sprint(i + 1)
				_, err := s.Certificate(ctx, serial)
				if i == failing && !errors.Is(err, ErrNotFound) {
					t.Errorf("certificate of failed fn: %v, want ErrNotFound", err)
				}
				if i != failing && err != nil {
					t.Errorf("certificate %s: %v", serial, err)
				}
			}
			events := checkChain(t, s, nil)
			var targets []string
			for _, e := range events {
				targets = append(targets, e.Target)
			}
			if want := []string{"1", "2", "4", "5"}; !slices.Equal(targets, want) {
				t.Errorf("audit targets = %v, want %v", targets, want)
			}
		})
	}
}

func TestPanicDoesNotPoisonWriter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		value any
	}{
		{"string", "boom"},
		{"error", errors.New("boom")},
		{"nil", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := openTest(t, Config{})
			seedIssuers(t, s, "int")
			err := s.WithTx(context.Background(), func(tx Tx) error {
				c := testCert("int", "dead")
				if err := issue(tx, &c); err != nil {
					return err
				}
				panic(tt.value)
			})
			if err == nil || !strings.Contains(err.Error(), "panicked") {
				t.Fatalf("WithTx = %v, want a panic error", err)
			}
			for i := range 3 {
				c := testCert("int", fmt.Sprint(i+1))
				mustTx(t, s, func(tx Tx) error { return issue(tx, &c) })
			}
			if _, err := s.Certificate(context.Background(), "dead"); !errors.Is(err, ErrNotFound) {
				t.Errorf("panicked fn's certificate: %v, want ErrNotFound", err)
			}
			if events := checkChain(t, s, nil); len(events) != 3 {
				t.Errorf("%d audit events, want 3", len(events))
			}
		})
	}
}

func TestClose(t *testing.T) {
	t.Parallel()
	t.Run("then WithTx", func(t *testing.T) {
		t.Parallel()
		s, err := Open(context.Background(), Config{Path: filepath.Join(t.TempDir(), "sigil.db"), Clock: clockwork.NewFakeClockAt(testStart)})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		ran := false
		if err := s.WithTx(context.Background(), func(Tx) error { ran = true; return nil }); !errors.Is(err, ErrClosed) {
			t.Errorf("WithTx after Close = %v, want ErrClosed", err)
		}
		if ran {
			t.Error("fn ran after Close")
		}
		if err := s.Checkpoint(context.Background()); !errors.Is(err, ErrClosed) {
			t.Errorf("Checkpoint after Close = %v, want ErrClosed", err)
		}
	})
	t.Run("commits queued writes", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "sigil.db")
		s, err := Open(context.Background(), Config{Path: path, Clock: clockwork.NewFakeClockAt(testStart)})
		if err != nil {
			t.Fatal(err)
		}
		seedIssuers(t, s, "int")
		release := holdWriter(t, s)
		const queued = 3
		errs := make(chan error, queued)
		for i := range queued {
			c := testCert("int", fmt.Sprint(i+1))
			go func() { errs <- s.WithTx(context.Background(), func(tx Tx) error { return issue(tx, &c) }) }()
		}
		waitQueued(t, s, queued)
		closed := make(chan error, 1)
		go func() { closed <- s.Close() }()
		for { // wait until Close has stopped new writes
			s.gc.mu.Lock()
			c := s.gc.closed
			s.gc.mu.Unlock()
			if c {
				break
			}
			runtime.Gosched()
		}
		if err := s.WithTx(context.Background(), func(Tx) error { return nil }); !errors.Is(err, ErrClosed) {
			t.Errorf("WithTx while closing = %v, want ErrClosed", err)
		}
		release()
		for range queued {
			if err := <-errs; err != nil {
				t.Errorf("queued WithTx = %v, want nil (Close commits pending writes)", err)
			}
		}
		if err := <-closed; err != nil {
			t.Fatalf("Close: %v", err)
		}
		s = openTest(t, Config{Path: path})
		if events := checkChain(t, s, nil); len(events) != queued {
			t.Errorf("%d events after reopen, want %d", len(events), queued)
		}
	})
}

func TestContextCanceledWhileQueued(t *testing.T) {
	t.Parallel()
	s := openTest(t, Config{})
	release := holdWriter(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan bool, 1)
	done := make(chan error, 1)
	go func() {
		done <- s.WithTx(ctx, func(tx Tx) error {
			ran <- true
			return tx.PutSetting("k", []byte("v"))
		})
	}()
	waitQueued(t, s, 1)
	cancel()
	release()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("WithTx = %v, want context.Canceled", err)
	}
	select {
	case <-ran:
		t.Error("fn of a canceled request ran")
	default:
	}
	if _, err := s.Setting(context.Background(), "k"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Setting = %v, want ErrNotFound", err)
	}
	if err := s.WithTx(context.Background(), func(tx Tx) error { return tx.PutSetting("k", nil) }); err != nil {
		t.Errorf("WithTx after a canceled request: %v", err)
	}
}

// TestFullQueue checks that a submitter blocked on a full queue (more
// concurrent writers than MaxBatch) never stalls the writer.
func TestFullQueue(t *testing.T) {
	t.Parallel()
	t.Run("blocked submitter", func(t *testing.T) {
		t.Parallel()
		const maxBatch = 2
		s := openTest(t, Config{MaxBatch: maxBatch})
		release := holdWriter(t, s)
		errs := make(chan error, maxBatch+1)
		put := func(ctx context.Context, i int) {
			errs <- s.WithTx(ctx, func(tx Tx) error { return tx.PutSetting(fmt.Sprint(i), []byte{1}) })
		}
		for i := range maxBatch {
			go put(context.Background(), i)
		}
		waitQueued(t, s, maxBatch) // the queue is full
		// A generous deadline turns a stalled writer into a test failure
		// instead of a hang.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		go put(ctx, maxBatch)
		for { // wait until the extra submitter is blocked inside submit
			if !s.gc.mu.TryLock() {
				break
			}
			s.gc.mu.Unlock()
			runtime.Gosched()
		}
		release()
		for range maxBatch + 1 {
			if err := <-errs; err != nil {
				t.Errorf("WithTx = %v, want nil", err)
			}
		}
	})
	t.Run("many writers", func(t *testing.T) {
		t.Parallel()
		var log commitLog
		s := openTest(t, Config{MaxBatch: 2, OnCommit: log.observe})
		var wg sync.WaitGroup
		for w := range 16 {
			wg.Go(func() {
				for i := range 10 {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					err := s.WithTx(ctx, func(tx Tx) error {
						_, err := tx.AppendAudit(audit.Event{Time: testStart, Actor: fmt.Sprint(w), Action: "x", Target: fmt.Sprint(i)})
						return err
					})
					cancel()
					if err != nil {
						t.Errorf("writer %d: %v", w, err)
						return
					}
				}
			})
		}
		wg.Wait()
		if events := checkChain(t, s, nil); len(events) != 160 {
			t.Errorf("%d events, want 160", len(events))
		}
		for _, n := range log.batches() {
			if n > 2 {
				t.Errorf("batch of %d exceeds MaxBatch 2", n)
			}
		}
	})
}

func TestCheckpointErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	appendOne := func(t *testing.T, s *SQLite) {
		t.Helper()
		mustTx(t, s, func(tx Tx) error {
			_, err := tx.AppendAudit(audit.Event{Time: testStart, Actor: "system", Action: "tick"})
			return err
		})
	}
	t.Run("no signer", func(t *testing.T) {
		t.Parallel()
		s := openTest(t, Config{})
		appendOne(t, s)
		if err := s.Checkpoint(ctx); err == nil {
			t.Error("Checkpoint without a signer succeeded")
		}
	})
	t.Run("empty chain", func(t *testing.T) {
		t.Parallel()
		s := openTest(t, Config{})
		newTestSigner(t).install(s, 1)
		if err := s.Checkpoint(ctx); err != nil {
			t.Errorf("Checkpoint of the empty chain: %v", err)
		}
		if cps, _ := s.Checkpoints(ctx); len(cps) != 0 {
			t.Errorf("%d checkpoints of the empty chain, want 0", len(cps))
		}
	})
	t.Run("signer fails", func(t *testing.T) {
		t.Parallel()
		s := openTest(t, Config{})
		errSign := errors.New("hsm unavailable")
		s.SetCheckpointer(Checkpointer{Every: 1, Sign: func(audit.Head) (audit.Checkpoint, error) {
			return audit.Checkpoint{}, errSign
		}})
		for range 3 {
			appendOne(t, s) // writes still commit
		}
		if err := s.Checkpoint(ctx); !errors.Is(err, errSign) {
			t.Errorf("Checkpoint = %v, want %v", err, errSign)
		}
		// The writer looks for a due checkpoint after it answers, so the
		// new signer may also sign head 3; head 4 must be signed.
		signer := newTestSigner(t)
		signer.install(s, 1)
		appendOne(t, s)
		if err := s.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		cps, _ := s.Checkpoints(ctx)
		if len(cps) == 0 || len(cps) > 2 || cps[len(cps)-1].Seq != 4 {
			t.Errorf("checkpoints %v, want [4] or [3 4]", seqs(cps))
		}
		checkChain(t, s, signer.keys())
	})
}

func TestReopen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sigil.db")
	signer := newTestSigner(t)
	s, err := Open(ctx, Config{Path: path, Clock: clockwork.NewFakeClockAt(testStart)})
	if err != nil {
		t.Fatal(err)
	}
	signer.install(s, 4)
	seedIssuers(t, s, "int")
	for i := range 10 {
		c := testCert("int", fmt.Sprint(i+1))
		mustTx(t, s, func(tx Tx) error { return issue(tx, &c) })
	}
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	before := checkChain(t, s, signer.keys())
	cpsBefore, err := s.Checkpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openTest(t, Config{Path: path})
	signer.install(s, 4)
	n := signer.signed()
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if signer.signed() != n {
		t.Error("Checkpoint after reopen signed again: the signed head was not restored")
	}
	if cps, _ := s.Checkpoints(ctx); len(cps) != len(cpsBefore) {
		t.Errorf("%d checkpoints after reopen, want %d", len(cps), len(cpsBefore))
	}

	last := before[len(before)-1]
	c := testCert("int", "b")
	var next audit.Event
	mustTx(t, s, func(tx Tx) error {
		if err := tx.InsertCertificate(&c); err != nil {
			return err
		}
		var err error
		next, err = tx.AppendAudit(issueEvent(&c))
		return err
	})
	if next.Seq != last.Seq+1 || !bytes.Equal(next.PrevHash, last.Hash) {
		t.Errorf("first event after reopen: seq %d prev %x, want seq %d prev %x", next.Seq, next.PrevHash, last.Seq+1, last.Hash)
	}
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if events := checkChain(t, s, signer.keys()); len(events) != len(before)+1 {
		t.Errorf("%d events, want %d", len(events), len(before)+1)
	}
}

func TestPragmas(t *testing.T) {
	t.Parallel()
	s := openTest(t, Config{})
	ctx := context.Background()
	tests := []struct {
		conn   string
		pragma string
		want   string
	}{
		{"write", "journal_mode", "wal"},
		{"write", "synchronous", "2"}, // FULL: the WAL is fsynced at every commit
		{"write", "foreign_keys", "1"},
		{"write", "busy_timeout", "10000"},
		{"read", "journal_mode", "wal"},
		{"read", "query_only", "1"},
		{"read", "busy_timeout", "10000"},
	}
	for _, tt := range tests {
		db := s.read
		if tt.conn == "write" {
			db = s.write // idle: the writer holds it only while committing
		}
		var got string
		if err := db.QueryRowContext(ctx, "PRAGMA "+tt.pragma).Scan(&got); err != nil {
			t.Fatalf("%s PRAGMA %s: %v", tt.conn, tt.pragma, err)
		}
		if got != tt.want {
			t.Errorf("%s PRAGMA %s = %s, want %s", tt.conn, tt.pragma, got, tt.want)
		}
	}
	if _, err := s.read.ExecContext(ctx, "INSERT INTO settings (name, value) VALUES ('x', x'00')"); err == nil {
		t.Error("write through a read connection succeeded")
	}
}

func seqs(cps []audit.Checkpoint) []int64 {
	var out []int64
	for _, c := range cps {
		out = append(out, c.Seq)
	}
	return out
}

// TestSharedFileWriters: two stores open on one file, as sigil serve and an
// offline command such as sigil ca root-crl are, append to one chain: each
// writer picks up the other's events instead of forking the chain or
// colliding on seq, and a checkpoint one signs is not signed again by the other.
func TestSharedFileWriters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sigil.db")
	a, b := openTest(t, Config{Path: path}), openTest(t, Config{Path: path})
	signer := newTestSigner(t)
	signer.install(a, 1000)
	signer.install(b, 1000)
	appendOne := func(s *SQLite, i int) audit.Event {
		t.Helper()
		var e audit.Event
		mustTx(t, s, func(tx Tx) error {
			var err error
			e, err = tx.AppendAudit(audit.Event{Time: testStart.Add(time.Duration(i) * time.Second), Actor: "system", Action: "tick"})
			return err
		})
		return e
	}
	for i, s := range []*SQLite{a, b, a, a, b, a} {
		if e := appendOne(s, i); e.Seq != int64(i+1) {
			t.Fatalf("event %d: seq %d, want %d", i, e.Seq, i+1)
		}
	}
	if err := b.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	n := signer.signed()
	if err := a.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if signer.signed() != n {
		t.Errorf("a signed head %d again after b signed it", signer.heads[n].Seq)
	}
	if events := checkChain(t, a, signer.keys()); len(events) != 6 {
		t.Errorf("%d events, want 6", len(events))
	}
}
