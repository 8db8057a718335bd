package testkms

import (
	"net/http"
	"os"
	"strings"
	"testing"
)

func TestStartAnswersAndStops(t *testing.T) {
	s := Start(t)
	if !strings.HasPrefix(s.Endpoint, "http://127.0.0.1:") {
		t.Fatalf("endpoint %q", s.Endpoint)
	}
	if err := s.waitAnswer(); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	req, _ := http.NewRequest(http.MethodPost, s.Endpoint, strings.NewReader("{}"))
	req.Header.Set("X-Amz-Target", "TrentService.ListKeys")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("local-kms still answers after Stop")
	}
	s.Stop() // a second Stop (t.Cleanup's) does nothing
}

func TestConfigFile(t *testing.T) {
	p := WriteConfig(t, "http://127.0.0.1:1")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"[profile " + Profile + "]", "endpoint_url = http://127.0.0.1:1", "region = " + Region} {
		if !strings.Contains(string(b), want) {
			t.Errorf("config lacks %q:\n%s", want, b)
		}
	}
}

func TestRestartKeepsPortAndData(t *testing.T) {
	s := Start(t)
	s.Stop()
	r := s.Restart(t)
	if r.Endpoint != s.Endpoint || r.Dir != s.Dir {
		t.Fatalf("restarted at %s in %s, was %s in %s", r.Endpoint, r.Dir, s.Endpoint, s.Dir)
	}
	if err := r.waitAnswer(); err != nil {
		t.Fatal(err)
	}
}
