package main

import (
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// loopbackDNS is a minimal authoritative DNS server on 127.0.0.1 (UDP) for
// ACME validation in tests: the A and TXT records set on it, an empty
// answer for other types of a known name, NXDOMAIN for every other name.
type loopbackDNS struct {
	addr string
	mu   sync.Mutex
	a    map[string]net.IP   // by lower-case FQDN
	txt  map[string][]string // by lower-case FQDN
	caa  map[string][]dns.RR // by lower-case FQDN
}

// startLoopbackDNS starts a server and stops it when the test ends.
func startLoopbackDNS(t testing.TB) *loopbackDNS {
	t.Helper()
	d := &loopbackDNS{a: map[string]net.IP{}, txt: map[string][]string{}, caa: map[string][]dns.RR{}}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("test dns: %v", err)
	}
	d.addr = pc.LocalAddr().String()
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(d.handle)}
	started := make(chan struct{})
	var once sync.Once
	srv.NotifyStartedFunc = func() { once.Do(func() { close(started) }) }
	done := make(chan error, 1)
	go func() { done <- srv.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("test dns: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Shutdown(); err != nil {
			t.Errorf("test dns shutdown: %v", err)
		}
		<-done
	})
	return d
}

func (d *loopbackDNS) setA(name string, ip net.IP) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.a[strings.ToLower(dns.Fqdn(name))] = ip.To4()
}

func (d *loopbackDNS) setTXT(name string, values ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.txt[strings.ToLower(dns.Fqdn(name))] = values
}

// setCAA sets the CAA records of name, each in zone-file form (`0 issue
// "ca.test"`), in the order given; none removes them.
func (d *loopbackDNS) setCAA(t testing.TB, name string, records ...string) {
	t.Helper()
	var rrs []dns.RR
	for _, r := range records {
		rr, err := dns.NewRR(dns.Fqdn(name) + " 0 IN CAA " + r)
		if err != nil {
			t.Fatalf("test dns: CAA %s: %v", r, err)
		}
		rrs = append(rrs, rr)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.caa[strings.ToLower(dns.Fqdn(name))] = rrs
}

func (d *loopbackDNS) handle(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	// Without these flags an empty NOERROR reads as a lame referral to Go.
	m.Authoritative, m.RecursionAvailable = true, true
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, q := range r.Question {
		name := strings.ToLower(dns.Fqdn(q.Name))
		ip, hasA := d.a[name]
		txt, hasTXT := d.txt[name]
		caa, hasCAA := d.caa[name]
		if !hasA && !hasTXT && !hasCAA {
			m.Rcode = dns.RcodeNameError
			continue
		}
		hdr := dns.RR_Header{Name: q.Name, Rrtype: q.Qtype, Class: dns.ClassINET, Ttl: 0}
		switch {
		case q.Qtype == dns.TypeA && hasA:
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: ip})
		case q.Qtype == dns.TypeTXT && hasTXT:
			for _, v := range txt {
				m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr, Txt: []string{v}})
			}
		case q.Qtype == dns.TypeCAA && hasCAA:
			m.Answer = append(m.Answer, caa...)
		}
	}
	_ = w.WriteMsg(m)
}
