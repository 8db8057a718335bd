package acme

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.step.sm/crypto/jose"

	"github.com/sigil-ca/sigil/ca"
	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

// Authority is what the ACME server asks of ca.
type Authority interface {
	Sign(ctx context.Context, req ca.SignRequest) (*ca.Issued, error)
	CheckNames(profile string, dns []string, ips []net.IP) error
	Certificate(ctx context.Context, serial string) (store.CertRecord, error)
	Intermediate() ca.Issuer
	// IssuerByID finds any recorded issuer, so that a certificate of an
	// intermediate since rotated out is served with its own chain.
	IssuerByID(id string) (ca.Issuer, bool)
	NewHMACSecret(ctx context.Context, purpose, actor string, inTx func(tx store.Tx, rec store.KeyRecord) error) ([]byte, store.KeyRecord, error)
	HMACSecret(ctx context.Context, keyID, actor string) ([]byte, error)
	Revoke(ctx context.Context, req ca.RevokeRequest) (store.CertRecord, error)
	CheckKeyNotBlocked(ctx context.Context, pub crypto.PublicKey) error
}

// checkAccountKey refuses an account key the CA has blocked (a key
// revoked for keyCompromise, RFC 8555 §6.7 badPublicKey).
func (s *Server) checkAccountKey(ctx context.Context, key *jose.JSONWebKey) error {
	err := s.ca.CheckKeyNotBlocked(ctx, key.Key)
	if e, ok := ca.AsError(err); ok && e.Kind == ca.Forbidden {
		return BadPublicKey("account " + e.Detail)
	}
	return err
}

// Challenger checks challenge responses; *Validator implements it.
type Challenger interface {
	HTTP01(ctx context.Context, id Identifier, token, keyAuth string) error
	TLSALPN01(ctx context.Context, id Identifier, keyAuth string) error
	DNS01(ctx context.Context, domain, keyAuth string) error
}

// Lifetimes of pending objects (RFC 8555 §7.1.3, §7.1.4).
const (
	orderLifetime  = 7 * 24 * time.Hour
	authzLifetime  = 7 * 24 * time.Hour
	maxIdentifiers = 100
)

// DefaultAuthzReuse is how long a proven authorization is reused when
// Config.AuthzReuse is unset.
const DefaultAuthzReuse = 30 * 24 * time.Hour

type orderView struct {
	Status         string           `json:"status"`
	Expires        string           `json:"expires"`
	Identifiers    []Identifier     `json:"identifiers"`
	NotBefore      string           `json:"notBefore,omitempty"`
	NotAfter       string           `json:"notAfter,omitempty"`
	Authorizations []string         `json:"authorizations"`
	Finalize       string           `json:"finalize"`
	Certificate    string           `json:"certificate,omitempty"`
	Profile        string           `json:"profile,omitempty"`
	Error          *json.RawMessage `json:"error,omitempty"`
}

func (s *Server) orderView(r *http.Request, o store.ACMEOrder) orderView {
	v := orderView{Status: o.Status, Expires: o.Expires.Format(time.RFC3339), Finalize: s.url(r, "/order/"+o.ID+"/finalize"), Profile: o.Profile}
	for _, id := range o.Identifiers {
		v.Identifiers = append(v.Identifiers, Identifier{Type: id.Type, Value: id.Value})
	}
	for _, a := range o.AuthzIDs {
		v.Authorizations = append(v.Authorizations, s.url(r, "/authz/"+a))
	}
	if !o.NotBefore.IsZero() {
		v.NotBefore = o.NotBefore.Format(time.RFC3339)
	}
	if !o.NotAfter.IsZero() {
		v.NotAfter = o.NotAfter.Format(time.RFC3339)
	}
	if o.CertSerial != "" {
		v.Certificate = s.url(r, "/cert/"+o.CertSerial)
	}
	if len(o.Error) > 0 {
		raw := json.RawMessage(o.Error)
		v.Error = &raw
	}
	return v
}

type newOrderReq struct {
	Identifiers []Identifier `json:"identifiers"`
	NotBefore   string       `json:"notBefore"`
	NotAfter    string       `json:"notAfter"`
	Profile     string       `json:"profile"`
	Replaces    string       `json:"replaces"`
}

// checkProfile refuses a profile this endpoint does not offer.
func (s *Server) checkProfile(name string) error {
	if _, ok := s.profiles()[name]; !ok {
		return InvalidProfile(fmt.Sprintf("profile %q is not offered by this endpoint", name))
	}
	return nil
}

// normalizeIdentifiers lower-cases, checks type and syntax, and removes
// duplicates (RFC 8555 §7.4, RFC 8738).
func normalizeIdentifiers(ids []Identifier) ([]store.ACMEIdentifier, error) {
	if len(ids) == 0 {
		return nil, Malformed("an order needs at least one identifier")
	}
	if len(ids) > maxIdentifiers {
		return nil, RejectedIdentifier(fmt.Sprintf("at most %d identifiers per order", maxIdentifiers))
	}
	var out []store.ACMEIdentifier
	seen := map[store.ACMEIdentifier]bool{}
	for _, id := range ids {
		n := store.ACMEIdentifier{Type: id.Type, Value: strings.ToLower(strings.TrimSpace(id.Value))}
		switch id.Type {
		case "dns":
			if net.ParseIP(n.Value) != nil {
				return nil, Malformed("identifier %q is an IP address; use type \"ip\"", id.Value)
			}
		case "ip":
			ip := net.ParseIP(id.Value)
			if ip == nil {
				return nil, Malformed("identifier %q is not an IP address", id.Value)
			}
			n.Value = ip.String()
		default:
			return nil, UnsupportedIdentifier(fmt.Sprintf("identifier type %q is not supported (dns, ip)", id.Type))
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out, nil
}

func (s *Server) newOrder(w http.ResponseWriter, r *http.Request) error {
	p, err := s.readPost(r, false)
	if err != nil {
		return err
	}
	var req newOrderReq
	if err := decodePayload(p.jws.Payload, &req); err != nil {
		return err
	}
	if req.NotBefore != "" || req.NotAfter != "" {
		return Malformed("notBefore and notAfter are not supported; validity comes from the profile")
	}
	ids, err := normalizeIdentifiers(req.Identifiers)
	if err != nil {
		return err
	}
	profile := s.cfg.Profile
	if req.Profile != "" {
		if err := s.checkProfile(req.Profile); err != nil {
			return err
		}
		profile = req.Profile
	}
	var dns []string
	var ips []net.IP
	for _, id := range ids {
		if id.Type == "ip" {
			ips = append(ips, net.ParseIP(id.Value))
		} else {
			dns = append(dns, id.Value)
		}
	}
	if err := s.ca.CheckNames(profile, dns, ips); err != nil {
		return err
	}
	if s.cfg.Names != nil {
		if subs := s.cfg.Names.Check(ca.Names{DNS: dns, IPs: ips}); len(subs) > 0 {
			return &ca.Error{Kind: ca.Rejected, Detail: "this ACME endpoint's name policy refuses it: " + subs[0].Detail, Sub: subs}
		}
	}
	// An order proves nothing yet: it counts against its account and its
	// client, never against the domains it names (see RateLimits).
	now0 := s.clk.Now()
	undoAccount, err := s.perAccount.take(p.account.ID, now0)
	if err != nil {
		return err
	}
	if err := s.ordersPerIP.allow(clientKey(r), now0); err != nil {
		undoAccount()
		return err
	}
	acct := p.account
	if req.Replaces != "" {
		// RFC 9773 §5: the replaced certificate must be this account's.
		old, err := s.lookupCertID(r, req.Replaces)
		if err != nil {
			return err
		}
		if ordered, err := s.orderedBy(r.Context(), acct, old.Serial); err != nil {
			return err
		} else if !ordered {
			return Unauthorized("the replaced certificate was not issued to this account")
		}
		// RFC 9773 §5: a certificate is replaced once.
		switch by, err := s.st.CertificateReplacing(r.Context(), old.Serial); {
		case err == nil:
			return AlreadyReplaced(fmt.Sprintf("certificate %s was already replaced by %s", old.Serial, by.Serial))
		case !errors.Is(err, store.ErrNotFound):
			return fmt.Errorf("find replacement: %w", err)
		}
	}
	now := s.clk.Now().UTC()
	order := store.ACMEOrder{AccountID: acct.ID, Endpoint: s.cfg.Name, Status: store.ACMEPending, Identifiers: ids,
		Profile: profile, Replaces: req.Replaces, Expires: now.Add(orderLifetime), Created: now, Updated: now}
	if order.ID, err = randomID(); err != nil {
		return err
	}
	var fresh []store.ACMEAuthz
	allValid := true
	for _, id := range ids {
		wildcard := strings.HasPrefix(id.Value, "*.")
		base := store.ACMEIdentifier{Type: id.Type, Value: strings.TrimPrefix(id.Value, "*.")}
		// Reuse a proven authorization that outlives the order (RFC 8555 §7.1.4).
		if s.cfg.AuthzReuse > 0 {
			prev, err := s.st.ACMEReusableAuthz(r.Context(), acct.ID, base, wildcard, now.Add(time.Hour))
			if err == nil {
				order.AuthzIDs = append(order.AuthzIDs, prev.ID)
				continue
			}
			if !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("reuse authorization: %w", err)
			}
		}
		az, err := newAuthz(acct.ID, base, wildcard, now)
		if err != nil {
			return err
		}
		fresh = append(fresh, az)
		order.AuthzIDs = append(order.AuthzIDs, az.ID)
		allValid = false
	}
	if allValid {
		order.Status = store.ACMEReady
	}
	err = update(r.Context(), s.st, func(tx Tx) error {
		for _, az := range fresh {
			if err := tx.InsertACMEAuthz(az); err != nil {
				return err
			}
		}
		if err := tx.InsertACMEOrder(order); err != nil {
			return err
		}
		return s.auditTx(tx, acct, audit.ActionACMEOrderCreated, order.ID, map[string]string{"identifiers": identifierList(ids),
			"status": order.Status, "profile": profile, "replaces": req.Replaces})
	})
	if err != nil {
		return fmt.Errorf("create order: %w", err)
	}
	w.Header().Set("Location", s.url(r, "/order/"+order.ID))
	return writeJSON(w, http.StatusCreated, s.orderView(r, order))
}

// orderDomains lists the registered domains (eTLD+1) of ids' DNS names,
// each once, in order.
func orderDomains(ids []store.ACMEIdentifier) []string {
	var out []string
	for _, id := range ids {
		if id.Type != "dns" {
			continue
		}
		if d := registeredDomain(strings.TrimPrefix(id.Value, "*.")); !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

func identifierList(ids []store.ACMEIdentifier) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = id.Type + ":" + id.Value
	}
	return strings.Join(parts, ",")
}

// newAuthz makes a pending authorization with the challenges that can
// prove id: wildcards only by dns-01 (RFC 8555 §7.1.3), IPs never by dns-01
// (RFC 8738 §7).
func newAuthz(accountID string, id store.ACMEIdentifier, wildcard bool, now time.Time) (store.ACMEAuthz, error) {
	azID, err := randomID()
	if err != nil {
		return store.ACMEAuthz{}, err
	}
	types := []string{"http-01", "dns-01", "tls-alpn-01"}
	switch {
	case wildcard:
		types = []string{"dns-01"}
	case id.Type == "ip":
		types = []string{"http-01", "tls-alpn-01"}
	}
	az := store.ACMEAuthz{ID: azID, AccountID: accountID, Status: store.ACMEPending, Identifier: id, Wildcard: wildcard, Expires: now.Add(authzLifetime)}
	for _, t := range types {
		cid, err := randomID()
		if err != nil {
			return store.ACMEAuthz{}, err
		}
		tok, err := randomToken()
		if err != nil {
			return store.ACMEAuthz{}, err
		}
		az.Challenges = append(az.Challenges, store.ACMEChallenge{ID: cid, AuthzID: azID, Type: t, Token: tok, Status: store.ACMEPending})
	}
	return az, nil
}

// randomToken is 128 bits or more of entropy, base64url (RFC 8555 §8.3).
func randomToken() (string, error) {
	a, err := randomID()
	if err != nil {
		return "", err
	}
	b, err := randomID()
	return a + b, err
}

// loadOrder fetches an order owned by the requesting account and brings its
// status up to date with its authorizations and expiry (RFC 8555 §7.1.6).
func (s *Server) loadOrder(ctx context.Context, acct *store.ACMEAccount, id string) (store.ACMEOrder, error) {
	o, err := s.st.ACMEOrder(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && (o.AccountID != acct.ID || o.Endpoint != s.cfg.Name)) {
		return store.ACMEOrder{}, Malformed("no such order").WithStatus(http.StatusNotFound)
	}
	if err != nil {
		return store.ACMEOrder{}, fmt.Errorf("load order: %w", err)
	}
	now := s.clk.Now()
	if o.Status == store.ACMEProcessing && now.Sub(o.Updated) > staleProcessing {
		// A certificate commits with its order turning valid, so an order
		// processing this long has none: its finalize died with a server.
		// Ready again, the client may finalize once more.
		return s.moveOrder(ctx, o, store.ACMEReady, now)
	}
	if o.Status != store.ACMEPending && o.Status != store.ACMEReady {
		return o, nil
	}
	next := o.Status
	if now.After(o.Expires) {
		next = store.ACMEInvalid
	} else if o.Status == store.ACMEPending {
		next = store.ACMEReady
		for _, azID := range o.AuthzIDs {
			az, err := s.st.ACMEAuthz(ctx, azID)
			if err != nil {
				return store.ACMEOrder{}, fmt.Errorf("load authorization: %w", err)
			}
			switch {
			case az.Status == store.ACMEValid && now.Before(az.Expires):
			case az.Status == store.ACMEPending && now.Before(az.Expires):
				next = store.ACMEPending
			default:
				next = store.ACMEInvalid
			}
			if next == store.ACMEInvalid {
				break
			}
		}
	}
	if next == o.Status {
		return o, nil
	}
	return s.moveOrder(ctx, o, next, now)
}

// staleProcessing is how long an order may stay processing before it is
// taken for abandoned: far longer than a finalize takes.
const staleProcessing = 2 * time.Minute

// moveOrder moves o to status, guarded by the version read; if another
// request moved it first, the order as that request left it.
func (s *Server) moveOrder(ctx context.Context, o store.ACMEOrder, status string, now time.Time) (store.ACMEOrder, error) {
	next := o
	next.Status, next.Updated = status, now.UTC()
	err := update(ctx, s.st, func(tx Tx) error { return tx.TransitionACMEOrder(next, o) })
	if errors.Is(err, store.ErrStateChanged) {
		if o, err = s.st.ACMEOrder(ctx, o.ID); err != nil {
			return store.ACMEOrder{}, fmt.Errorf("load order: %w", err)
		}
		return o, nil
	}
	if err != nil {
		return store.ACMEOrder{}, fmt.Errorf("update order: %w", err)
	}
	return next, nil
}

func (s *Server) getOrder(w http.ResponseWriter, r *http.Request) error {
	p, err := s.readPost(r, false)
	if err != nil {
		return err
	}
	o, err := s.loadOrder(r.Context(), p.account, r.PathValue("id"))
	if err != nil {
		return err
	}
	if o.Status == store.ACMEProcessing {
		w.Header().Set("Retry-After", "1")
	}
	return writeJSON(w, http.StatusOK, s.orderView(r, o))
}

type finalizeReq struct {
	CSR string `json:"csr"`
}

func (s *Server) finalize(w http.ResponseWriter, r *http.Request) error {
	p, err := s.readPost(r, false)
	if err != nil {
		return err
	}
	var req finalizeReq
	if err := decodePayload(p.jws.Payload, &req); err != nil {
		return err
	}
	o, err := s.loadOrder(r.Context(), p.account, r.PathValue("id"))
	if err != nil {
		return err
	}
	if o.Status != store.ACMEReady {
		return OrderNotReady(fmt.Sprintf("order is %s, not ready", o.Status))
	}
	der, err := base64.RawURLEncoding.DecodeString(req.CSR)
	if err != nil {
		return BadCSR("csr is not base64url (no padding)")
	}
	csr, err := ca.ParseCSR(der)
	if err != nil {
		return err
	}
	if err := csrMatchesOrder(csr, o.Identifiers); err != nil {
		return err
	}
	var replaces string
	if o.Replaces != "" {
		if _, replaces, err = parseCertID(o.Replaces); err != nil {
			return fmt.Errorf("order %s replaces %q: %w", o.ID, o.Replaces, err)
		}
	}
	if err := s.recheckCAA(r.Context(), r, p.account, &o); err != nil {
		return err
	}
	// Issuance is what a domain's budget protects, and only an account that
	// proved every name gets here.
	undoDomains, err := s.perDomain.takeAll(orderDomains(o.Identifiers), s.clk.Now())
	if err != nil {
		return err
	}
	// ready -> processing is a condition of the UPDATE: of two finalizes of
	// one order, one moves it and signs, the other is orderNotReady.
	ready := o
	o.Status, o.Updated = store.ACMEProcessing, s.clk.Now().UTC()
	err = update(r.Context(), s.st, func(tx Tx) error { return tx.TransitionACMEOrder(o, ready) })
	if errors.Is(err, store.ErrStateChanged) {
		undoDomains()
		return OrderNotReady("order is being finalized by another request")
	}
	if err != nil {
		undoDomains()
		return fmt.Errorf("update order: %w", err)
	}
	// The certificate commits with the order turning valid and its audit
	// event, or none of them does: no certificate without its order.
	iss, signErr := s.ca.Sign(r.Context(), ca.SignRequest{CSR: csr, Profile: o.Profile, Requester: p.account.Requester,
		Channel: ca.ChannelACME, Replaces: replaces, InTx: func(stx store.Tx, rec store.CertRecord) error {
			tx := view(stx)
			if s.signedHook != nil {
				s.signedHook()
			}
			valid := o
			valid.Status, valid.CertSerial, valid.Updated = store.ACMEValid, rec.Serial, s.clk.Now().UTC()
			if err := tx.TransitionACMEOrder(valid, o); err != nil {
				return err
			}
			return s.auditTx(tx, p.account, audit.ActionACMEOrderFinalized, o.ID, map[string]string{"status": valid.Status,
				"serial": valid.CertSerial, "replaces": valid.Replaces})
		}})
	if signErr == nil {
		o.Status, o.CertSerial, o.Updated = store.ACMEValid, iss.Record.Serial, iss.Record.Created
	} else {
		undoDomains()
		// A CSR the CA refuses is the client's to fix: the order goes back
		// to ready for another finalize (as Boulder does). Only a failure
		// of ours ends the order.
		processing := o
		o.Updated = s.clk.Now().UTC()
		if ca.KindOf(signErr) == ca.Internal {
			o.Status = store.ACMEInvalid
			o.Error, _ = json.Marshal(FromError(signErr))
		} else {
			o.Status = store.ACMEReady
		}
		err = update(r.Context(), s.st, func(tx Tx) error {
			if err := tx.TransitionACMEOrder(o, processing); err != nil {
				return err
			}
			return s.auditTx(tx, p.account, audit.ActionACMEOrderFinalized, o.ID, map[string]string{"status": o.Status,
				"serial": o.CertSerial, "replaces": o.Replaces})
		})
		if err != nil {
			return fmt.Errorf("update order: %w", err)
		}
		return signErr
	}
	w.Header().Set("Location", s.url(r, "/order/"+o.ID))
	return writeJSON(w, http.StatusOK, s.orderView(r, o))
}

// csrMatchesOrder requires the CSR to ask for exactly the order's
// identifiers (RFC 8555 §7.4).
func csrMatchesOrder(csr *x509.CertificateRequest, ids []store.ACMEIdentifier) error {
	var want, got []string
	for _, id := range ids {
		want = append(want, id.Type+":"+id.Value)
	}
	for _, d := range csr.DNSNames {
		got = append(got, "dns:"+strings.ToLower(strings.TrimSuffix(d, ".")))
	}
	for _, ip := range csr.IPAddresses {
		got = append(got, "ip:"+ip.String())
	}
	if len(csr.EmailAddresses) > 0 || len(csr.URIs) > 0 {
		return BadCSR("the CSR asks for names that are not in the order")
	}
	slices.Sort(want)
	slices.Sort(got)
	got = slices.Compact(got)
	if !slices.Equal(want, got) {
		return BadCSR(fmt.Sprintf("the CSR's names (%s) differ from the order's identifiers (%s)", strings.Join(got, ", "), strings.Join(want, ", ")))
	}
	return nil
}

// certificate serves the PEM chain (RFC 8555 §7.4.2).
func (s *Server) certificate(w http.ResponseWriter, r *http.Request) error {
	p, err := s.readPost(r, false)
	if err != nil {
		return err
	}
	notFound := Malformed("no such certificate").WithStatus(http.StatusNotFound)
	rec, err := s.ca.Certificate(r.Context(), r.PathValue("serial"))
	if err != nil || rec.Channel != ca.ChannelACME {
		return notFound
	}
	if ordered, err := s.orderedBy(r.Context(), p.account, rec.Serial); err != nil {
		return err
	} else if !ordered {
		return notFound
	}
	inter, ok := s.ca.IssuerByID(rec.IssuerID)
	if !ok {
		return fmt.Errorf("certificate %s names issuer %s, which is not recorded", rec.Serial, rec.IssuerID)
	}
	w.Header().Set("Content-Type", "application/pem-certificate-chain")
	for _, der := range [][]byte{rec.DER, inter.Cert.Raw} {
		if err := pem.Encode(w, &pem.Block{Type: "CERTIFICATE", Bytes: der}); err != nil {
			return nil // the client went away
		}
	}
	return nil
}

// orderedBy reports whether the certificate with serial was issued by an
// order acct placed on this endpoint. The order, not the requester identity
// certificates record, says so: that identity comes from an EAB key's
// free-form text, which certificates of other endpoints, accounts or
// channels may share.
func (s *Server) orderedBy(ctx context.Context, acct *store.ACMEAccount, serial string) (bool, error) {
	o, err := s.st.ACMECertOrder(ctx, serial)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("find the order of certificate %s: %w", serial, err)
	}
	return o.AccountID == acct.ID && o.Endpoint == s.cfg.Name, nil
}

func (s *Server) auditTx(tx Tx, acct *store.ACMEAccount, action, target string, detail map[string]string) error {
	if detail == nil {
		detail = map[string]string{}
	}
	detail["endpoint"] = s.cfg.Name
	_, err := tx.AppendAudit(audit.Event{Time: s.clk.Now(), Actor: "acme:" + acct.ID, Action: action, Target: target, Detail: detail})
	return err
}

// orders lists an account's orders, newest first, a page at a time with
// Link rel="next" (RFC 8555 §7.1.2.1).
func (s *Server) orders(w http.ResponseWriter, r *http.Request) error {
	p, err := s.readPost(r, false)
	if err != nil {
		return err
	}
	if p.account.ID != r.PathValue("id") {
		return Unauthorized("an account may only list its own orders")
	}
	page, next, err := s.st.ACMEOrders(r.Context(), p.account.ID, r.URL.Query().Get("cursor"), 100)
	if err != nil {
		return Malformed("bad cursor")
	}
	urls := make([]string, 0, len(page))
	for _, o := range page {
		urls = append(urls, s.url(r, "/order/"+o.ID))
	}
	if next != "" {
		w.Header().Add("Link", link(s.url(r, "/acct/"+p.account.ID+"/orders?cursor="+next), "next"))
	}
	return writeJSON(w, http.StatusOK, map[string][]string{"orders": urls})
}
