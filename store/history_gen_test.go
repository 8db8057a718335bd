package store

import (
	"cmp"
	"crypto/x509/pkix"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// historyGen generates a varied certificate history: skewed profiles,
// requesters, channels, key algorithms and names (shared zones, rare ones,
// mixed case, LIKE metacharacters), lifetimes from a day to a year,
// issuance over two years before now, some revoked, ACME ones linked to
// accounts through orders.
type historyGen struct {
	rng        *rand.Rand
	now        time.Time
	span       time.Duration // issuance times fall in [now-span, now)
	ordered    bool          // issuance times grow with insertion, as in production
	total      int           // certificates the fill will make (for ordered times)
	next       int
	prefix     string // of serials, so concurrent generators do not collide
	accounts   int
	requesters *rand.Zipf
	accountZ   *rand.Zipf
	hostZ      *rand.Zipf
	derSize    int
	der        []byte
}

func newHistoryGen(seed uint64, now time.Time, total, requesters, accounts int) *historyGen {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return &historyGen{
		rng: rng, now: now, span: 730 * 24 * time.Hour, total: total, prefix: fmt.Sprintf("%02x", seed%256),
		accounts:   accounts,
		requesters: rand.NewZipf(rng, 1.2, 2, uint64(requesters-1)),
		accountZ:   rand.NewZipf(rng, 1.2, 2, uint64(accounts-1)),
		hostZ:      rand.NewZipf(rng, 1.1, 4, 200000),
		derSize:    32,
	}
}

// pick returns one of choices with probability proportional to its weight.
func (g *historyGen) pick(choices ...any) string {
	total := 0.0
	for i := 1; i < len(choices); i += 2 {
		total += choices[i].(float64)
	}
	x := g.rng.Float64() * total
	for i := 0; i < len(choices); i += 2 {
		if x -= choices[i+1].(float64); x < 0 {
			return choices[i].(string)
		}
	}
	return choices[len(choices)-2].(string)
}

var genZones = []any{"example.com", 30.0, "corp.internal", 25.0, "svc.cluster.local", 25.0, "example.org", 10.0,
	"prod.acme.test", 9.8, "rare-zone.example", 0.1, "50%_off\\.test", 0.1}

// cert returns the next certificate and, for the ACME channel, the
// account whose order it finalizes ("" otherwise).
func (g *historyGen) cert() (CertRecord, string) {
	g.next++
	var created time.Time
	if g.ordered {
		created = g.now.Add(-g.span + time.Duration(float64(g.span)*float64(g.next)/float64(g.total+1)) + time.Duration(g.rng.Int64N(int64(time.Minute))))
	} else {
		created = g.now.Add(-time.Duration(g.rng.Int64N(int64(g.span))))
	}
	lifetime := map[string]time.Duration{"1d": 24 * time.Hour, "30d": 30 * 24 * time.Hour, "90d": 90 * 24 * time.Hour,
		"365d": 365 * 24 * time.Hour}[g.pick("1d", 10.0, "30d", 20.0, "90d", 55.0, "365d", 15.0)]
	issuer := g.pick("int-a", 70.0, "int-b", 30.0)
	channel := g.pick("acme", 45.0, "api", 30.0, "managed", 15.0, "renew", 10.0)
	account, requester := "", fmt.Sprintf("team-%03d", g.requesters.Uint64())
	if channel == "acme" {
		account = fmt.Sprintf("acct-%03d", g.accountZ.Uint64())
		requester = "acme:" + account
	}
	host := fmt.Sprintf("%s-%d", g.pick("web", 3.0, "api", 3.0, "db", 2.0, "mail", 1.0, "cache", 1.0, "vpn", 0.5), g.hostZ.Uint64())
	zone := g.pick(genZones...)
	cn := host + "." + zone
	sans := []string{cn}
	for range g.rng.IntN(4) {
		sans = append(sans, g.pick("www", 1.0, "alt", 1.0, "edge", 1.0)+"."+host+"."+g.pick(genZones...))
	}
	if g.rng.IntN(20) == 0 { // mixed case as requested
		sans[len(sans)-1] = strings.ToUpper(sans[len(sans)-1][:1]) + sans[len(sans)-1][1:]
	}
	profile := g.pick("server", 55.0, "client", 25.0, "mtls", 12.0, "codesign", 7.5, "legacy", 0.5)
	if profile == "client" { // a user: the CN is no SAN
		cn = fmt.Sprintf("User %d, Ops", g.hostZ.Uint64())
		sans = []string{fmt.Sprintf("user%d@%s", g.rng.IntN(1000), zone)}
	}
	name := pkix.Name{CommonName: cn}
	if g.rng.IntN(3) == 0 {
		name.Organization = []string{"Sigil Test"}
	}
	if len(g.der) != g.derSize {
		g.der = make([]byte, g.derSize)
	}
	c := CertRecord{
		IssuerID:     issuer,
		Serial:       fmt.Sprintf("%s%08x", g.prefix, g.next),
		Subject:      name.String(),
		SANs:         sans,
		NotBefore:    created.Add(-time.Minute),
		NotAfter:     created.Add(lifetime),
		KeyAlgorithm: g.pick("ECDSA-P256", 50.0, "RSA-2048", 30.0, "ECDSA-P384", 10.0, "Ed25519", 8.0, "RSA-4096", 2.0),
		Profile:      profile,
		Requester:    requester,
		Channel:      channel,
		DER:          g.der,
		Created:      created,
		SPKIHash:     []byte{0},
	}
	if g.rng.IntN(100) < 3 {
		c.RevokedAt = created.Add(time.Duration(g.rng.Int64N(int64(lifetime))))
		c.RevokeReason = 1
	}
	return c, account
}

// insert records c (revoking it if it is) and links it to account's order.
func (g *historyGen) insert(tx Tx, c *CertRecord, account string) error {
	if err := tx.InsertCertificate(c); err != nil {
		return err
	}
	if !c.RevokedAt.IsZero() {
		if err := tx.RevokeCertificate(c.IssuerID, c.Serial, c.RevokedAt, c.RevokeReason, time.Time{}); err != nil {
			return err
		}
	}
	if account == "" {
		return nil
	}
	return tx.InsertACMEOrder(ACMEOrder{ID: "order-" + c.Serial, AccountID: account, Status: "valid",
		Identifiers: []ACMEIdentifier{{Type: "dns", Value: c.SANs[0]}}, AuthzIDs: []string{}, CertSerial: c.Serial,
		Expires: c.Created, Created: c.Created, Updated: c.Created})
}

// accountsTx records the generator's ACME accounts.
func (g *historyGen) accountsTx(tx Tx) error {
	for i := range g.accounts {
		id := fmt.Sprintf("acct-%03d", i)
		if err := tx.InsertACMEAccount(ACMEAccount{ID: id, KeyThumbprint: "tp-" + id, KeyJWK: []byte("{}"), Status: "valid",
			Requester: "acme:" + id, Created: g.now.Add(-g.span)}); err != nil {
			return err
		}
	}
	return nil
}

// history is what fillHistory recorded: every certificate as stored, and
// the ACME account of each serial that has one.
type history struct {
	certs   []CertRecord
	account map[string]string
}

// fillHistory records n generated certificates through the store's bulk
// path: many InsertCertificate calls per transaction.
func fillHistory(t testing.TB, s *SQLite, n int, seed uint64, now time.Time) *history {
	t.Helper()
	seedIssuers(t, s, "int-a", "int-b")
	g := newHistoryGen(seed, now, n, 30, 12)
	mustTx(t, s, g.accountsTx)
	h := &history{account: map[string]string{}}
	for len(h.certs) < n {
		batch := min(n-len(h.certs), 500)
		var made []CertRecord
		mustTx(t, s, func(tx Tx) error {
			made = made[:0]
			for range batch {
				c, account := g.cert()
				if err := g.insert(tx, &c, account); err != nil {
					return err
				}
				if account != "" {
					h.account[c.Serial] = account
				}
				made = append(made, c)
			}
			return nil
		})
		h.certs = append(h.certs, made...)
	}
	return h
}

// matches is CertFilter's contract on one record, written out plainly.
func (h *history) matches(c CertRecord, f CertFilter) bool {
	names := certNames(c.Subject, c.SANs)
	anyName := func(ok func(string) bool) bool { return slices.ContainsFunc(names, ok) }
	in := func(t, after, before time.Time) bool {
		return (after.IsZero() || !t.Before(after)) && (before.IsZero() || t.Before(before))
	}
	switch {
	case f.Serial != "" && c.Serial != strings.ToLower(f.Serial),
		f.Name != "" && !anyName(func(n string) bool { return strings.Contains(n, strings.ToLower(f.Name)) }),
		f.NameExact != "" && !anyName(func(n string) bool { return n == strings.ToLower(f.NameExact) }),
		f.NameSuffix != "" && !anyName(func(n string) bool { return strings.HasSuffix(n, strings.ToLower(f.NameSuffix)) }),
		f.Profile != "" && c.Profile != f.Profile,
		f.Requester != "" && c.Requester != f.Requester,
		f.IssuerID != "" && c.IssuerID != f.IssuerID,
		f.IssuerKeyID != "" && "key-"+c.IssuerID != f.IssuerKeyID,
		f.Channel != "" && c.Channel != f.Channel,
		f.ACMEAccount != "" && h.account[c.Serial] != f.ACMEAccount,
		f.KeyAlgorithm != "" && c.KeyAlgorithm != f.KeyAlgorithm,
		!in(c.Created, f.IssuedAfter, f.IssuedBefore),
		!in(c.NotAfter, f.ExpiringAfter, f.ExpiringBefore),
		(!f.RevokedAfter.IsZero() || !f.RevokedBefore.IsZero()) && (c.RevokedAt.IsZero() || !in(c.RevokedAt, f.RevokedAfter, f.RevokedBefore)):
		return false
	}
	switch f.Status {
	case "revoked":
		return !c.RevokedAt.IsZero()
	case "valid":
		return c.RevokedAt.IsZero() && c.NotAfter.After(f.Now)
	case "expired":
		return c.RevokedAt.IsZero() && !c.NotAfter.After(f.Now)
	}
	return true
}

// sortKey is the record's key under s, as its cursor names it.
func sortKey(s CertSort, c CertRecord) CertCursor { return s.CursorOf(c) }

// compareIn orders a before b under s (negative: a first).
func compareIn(s CertSort, a, b CertRecord) int {
	ka, kb := sortKey(s, a), sortKey(s, b)
	r := cmp.Or(cmp.Compare(ka.Key, kb.Key), cmp.Compare(ka.ID, kb.ID))
	if s == SortIssuedDesc || s == SortExpiryDesc {
		return -r
	}
	return r
}

// want returns the records f selects, in f.Sort order.
func (h *history) want(f CertFilter) []CertRecord {
	var out []CertRecord
	for _, c := range h.certs {
		if h.matches(c, f) {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b CertRecord) int { return compareIn(f.Sort, a, b) })
	return out
}
