package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ---------------------------------------------------------------------------
// sigil keys rewrap

func TestCLIKeysRewrapWhileIssuing(t *testing.T) {
	skipLoadTestInShort(t)
	t.Parallel()
	inProcess(t)
	c := initCA(t)
	p := startServe(t, c)
	dir := t.TempDir()
	newPF := e2eWriteFile(t, dir, "new-passphrase", []byte("a-brand-new-test-passphrase\n"))
	wrongPF := e2eWriteFile(t, dir, "wrong-passphrase", []byte("not-the-current-passphrase\n"))

	_, keysBefore := e2eListKeys(t, p, c)
	if len(keysBefore) < 3 {
		t.Fatalf("only %d keys", len(keysBefore))
	}
	for _, k := range keysBefore {
		if k.KEK != "kek-1" {
			t.Fatalf("key %s starts under %s, want kek-1", k.ID, k.KEK)
		}
	}

	// 8 clients issue over HTTPS until each has finished one issuance that
	// began after the rewrap returned.
	client := c.httpClient(t)
	var (
		rewrapDone   atomic.Bool
		rewrapStart  atomic.Int64
		rewrapEnd    atomic.Int64
		ok, during   atomic.Int64
		mu           sync.Mutex
		failures     []string
		wg           sync.WaitGroup
		clientsReady sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	clientsReady.Add(8)
	for i := range 8 {
		name := fmt.Sprintf("w%d.example", i)
		csrPEM := e2eCSR(t, e2eP256(t), name, name)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ready := false
			for ctx.Err() == nil {
				after := rewrapDone.Load()
				_, err := e2eSignHTTPS(ctx, client, p.httpsURL, c.adminToken, csrPEM, "tls-server")
				now := time.Now().UnixNano()
				if err != nil {
					mu.Lock()
					failures = append(failures, err.Error())
					mu.Unlock()
					if !ready {
						ready = true
						clientsReady.Done()
					}
					if ctx.Err() != nil || after {
						return
					}
					continue
				}
				ok.Add(1)
				if s := rewrapStart.Load(); s != 0 && now > s && (rewrapEnd.Load() == 0 || now < rewrapEnd.Load()) {
					during.Add(1)
				}
				if !ready {
					ready = true
					clientsReady.Done()
				}
				if after {
					return
				}
			}
		}()
	}
	clientsReady.Wait() // every client has issued once: load is running

	rewrapStart.Store(time.Now().UnixNano())
	out, errOut, err := runSigil(t, nil, e2eAdmin(p, c, "keys", "rewrap", "--passphrase-file", c.passphraseFile, "--new-passphrase-file", newPF)...)
	rewrapEnd.Store(time.Now().UnixNano())
	rewrapDone.Store(true)
	if err != nil {
		cancel()
		wg.Wait()
		t.Fatalf("keys rewrap: %v\n%s%s", err, out, errOut)
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Errorf("%d issuances failed during the rewrap (of %d); first: %s", len(failures), int64(len(failures))+ok.Load(), failures[0])
	}
	if during.Load() == 0 {
		t.Errorf("no issuance completed while the rewrap ran: issuance stopped")
	}
	t.Logf("%d issuances, %d of them during the rewrap, 0 failures expected (got %d)", ok.Load(), during.Load(), len(failures))
	if !strings.Contains(out, "kek-2") {
		t.Errorf("rewrap output does not name the new KEK: %s", out)
	}

	keysJSON, keysAfter := e2eListKeys(t, p, c)
	if len(keysAfter) != len(keysBefore) {
		t.Errorf("key count %d -> %d", len(keysBefore), len(keysAfter))
	}
	for _, k := range keysAfter {
		if k.KEK != "kek-2" {
			t.Errorf("key %s (%s) is under %s after the rewrap, want kek-2", k.ID, k.Purpose, k.KEK)
		}
		if k.State != "active" {
			t.Errorf("key %s state %s", k.ID, k.State)
		}
	}
	for _, action := range []string{"key.rewrapped", "kek.rotated"} {
		if len(e2eListAudit(t, p, c, "--action", action)) == 0 {
			t.Errorf("no %s audit event", action)
		}
	}

	t.Run("wrong current passphrase changes nothing", func(t *testing.T) {
		eventsBefore := e2eListAudit(t, p, c)
		line := e2eFail(t, e2eAdmin(p, c, "keys", "rewrap", "--passphrase-file", wrongPF, "--new-passphrase-file", newPF)...)
		if !strings.Contains(strings.ToLower(line), "passphrase") || !strings.Contains(strings.ToLower(line), "wrong") {
			t.Errorf("unclear error: %s", line)
		}
		// The previous (now retired) passphrase is wrong too.
		e2eFail(t, e2eAdmin(p, c, "keys", "rewrap", "--passphrase-file", c.passphraseFile, "--new-passphrase-file", wrongPF)...)
		if again, _ := e2eListKeys(t, p, c); again != keysJSON {
			t.Errorf("keys list changed after a refused rewrap:\n%s\n->\n%s", keysJSON, again)
		}
		eventsAfter := e2eListAudit(t, p, c)
		if len(eventsAfter) < len(eventsBefore) {
			t.Fatalf("audit log shrank")
		}
		refused := 0
		for _, e := range eventsAfter[len(eventsBefore):] {
			if e.Action == "kek.rewrap.refused" {
				refused++
			} else {
				t.Errorf("refused rewrap appended a %s event", e.Action)
			}
		}
		if refused != 2 {
			t.Errorf("%d kek.rewrap.refused events for 2 refused rewraps: each refusal is audited", refused)
		}
	})

	p.stop(t)
	verifyBefore := e2eAuditVerify(t, c)

	t.Run("old passphrase no longer unlocks", func(t *testing.T) {
		line := e2eFail(t, "serve", "--config", c.config, "--passphrase-file", c.passphraseFile,
			"--https-addr", freeAddr(t), "--http-addr", freeAddr(t))
		if !strings.Contains(line, "wrong passphrase") {
			t.Errorf("want a clear \"wrong passphrase\" error, got: %s", line)
		}
		if got := e2eAuditVerify(t, c); got != verifyBefore {
			t.Errorf("a failed start changed the audit log: %+v -> %+v", verifyBefore, got)
		}
	})

	t.Run("new passphrase starts and issues", func(t *testing.T) {
		c2 := *c
		c2.passphraseFile = newPF
		p2 := startServe(t, &c2)
		chain := e2eIssueSAN(t, p2, &c2, "tls-server", "after.example")
		e2eVerifyChain(t, &c2, chain, "after.example", x509.ExtKeyUsageServerAuth)
		p2.stop(t)
	})
}
