package witness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/internal/atomicfile"
)

// queueSize bounds the records waiting to be published.
const queueSize = 1024

// postTimeout bounds one POST to the witness URL.
const postTimeout = 10 * time.Second

// Config says where records are published; Dir, URL or both.
type Config struct {
	// Dir is the witness directory (created 0700 if missing).
	Dir string
	// URL receives each record as a JSON POST.
	URL string
	// Logger reports records that could not be published (required).
	Logger *slog.Logger
	// Client posts to URL; default: a client with a 10s timeout.
	Client *http.Client
}

// Publisher publishes checkpoints and tree heads outside the database, off
// the store's writer goroutine: a slow disk or URL never holds up a commit.
type Publisher struct {
	dir, url string
	client   *http.Client
	log      *slog.Logger
	ch       chan Record
	done     chan struct{}
	once     sync.Once
}

// New starts a publisher for cfg; nil (and no error) if neither Dir nor
// URL is set. The directory is created (0700) and must be writable now, so
// that a misconfiguration stops start-up rather than going unnoticed.
func New(cfg Config) (*Publisher, error) {
	if cfg.Dir == "" && cfg.URL == "" {
		return nil, nil
	}
	if cfg.Logger == nil {
		return nil, errors.New("audit witness: a logger is required")
	}
	if cfg.Dir != "" {
		if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("audit witness: %w", err)
		}
		probe, err := os.CreateTemp(cfg.Dir, ".probe*")
		if err != nil {
			return nil, fmt.Errorf("audit witness: directory %s is not writable: %w", cfg.Dir, err)
		}
		probe.Close()
		os.Remove(probe.Name())
	}
	client := cfg.Client
	if client == nil {
		client = &http.Client{Timeout: postTimeout}
	}
	p := &Publisher{dir: cfg.Dir, url: cfg.URL, log: cfg.Logger, client: client,
		ch: make(chan Record, queueSize), done: make(chan struct{})}
	go p.run()
	return p, nil
}

// Publish queues what a commit signed; it never blocks. A full queue drops
// the record with an error in the log: the next checkpoint covers the same
// events, so the witness falls behind but is never wrong. Its signature is
// that of the store checkpointer's Publish hook.
func (p *Publisher) Publish(cps []audit.Checkpoint, heads []audit.TreeHead) {
	recs := make([]Record, 0, len(cps)+len(heads))
	for _, c := range cps {
		recs = append(recs, CheckpointRecord(c))
	}
	for _, h := range heads {
		recs = append(recs, TreeHeadRecord(h))
	}
	for _, r := range recs {
		select {
		case p.ch <- r:
		default:
			p.log.Error("audit witness queue full; record not published", "type", r.Type, "seq", r.Seq, "size", r.Size)
		}
	}
}

func (p *Publisher) run() {
	defer close(p.done)
	for r := range p.ch {
		if err := p.write(r); err != nil {
			p.log.Error("audit witness: publish failed", "type", r.Type, "seq", r.Seq, "size", r.Size, "error", err)
		}
	}
}

func (p *Publisher) write(r Record) error {
	body, err := json.Marshal(r)
	if err != nil {
		return err
	}
	var errs []error
	if p.dir != "" {
		errs = append(errs, atomicfile.WriteFile(filepath.Join(p.dir, r.FileName()), append(body, '\n'), 0o600))
	}
	if p.url != "" {
		errs = append(errs, p.post(body))
	}
	return errors.Join(errs...)
}

func (p *Publisher) post(body []byte) error {
	// The queue outlives any request: the POST has its own deadline.
	ctx, cancel := context.WithTimeout(context.Background(), postTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s answered %s", p.url, resp.Status)
	}
	return nil
}

// Close publishes what is queued and stops; call it after the store's last
// commit (the final checkpoint). Close on a nil Publisher does nothing.
func (p *Publisher) Close() {
	if p == nil {
		return
	}
	p.once.Do(func() {
		close(p.ch)
		<-p.done
	})
}
