package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"hash/fnv"
	"slices"
	"strings"
	"time"

	"github.com/sigil-ca/sigil/store"
)

// Renewal over mutual TLS (issue 7): a server presents its current
// certificate in the TLS handshake, which proves it holds the key, and gets
// a fresh certificate for the same names and profile: with the same key, or
// with the key of a CSR it sends (a rekey). The certificate is its only
// credential, so every rule that makes it one lives here.

// RenewRequest asks to renew the certificate a client authenticated with.
type RenewRequest struct {
	// Certificate is the leaf the client presented in the TLS handshake,
	// whose key the handshake proved it holds (TLS CertificateVerify); nil
	// when it presented none. Certificates it sent along are ignored: the
	// chain is built from this CA's own issuers.
	Certificate *x509.Certificate
	// CSR, if set, asks for a new key (rekey): its signature must verify,
	// its key must not be the current one nor blocked, and its names
	// (common name included) must be exactly the current certificate's.
	CSR *x509.CertificateRequest
	// Source is the client address, by which refusals of unauthenticated
	// requests are summed (see RecordUnauthenticatedRefusal).
	Source string
}

// Renew issues a successor to req.Certificate or refuses with an *Error.
// The certificate must chain to this CA's root through one of the
// intermediates it has recorded (the active one or an older one), be
// unexpired at the authority's clock, be recorded under that intermediate
// with exactly these bytes, be neither revoked nor on hold, have no
// successor yet (a certificate is renewed once; its successor renews next,
// as RFC 9773 "replaces" links them), and, if a token requested it (or the
// chain of renewals it ends), that token must not be revoked. The new
// certificate has the same names and profile (with the profile's current
// policy), the old one's lifetime capped by the profile's maximum, the old
// one's requester, channel ChannelRenew, and Replaces set to the old
// serial. A refusal of a known certificate is audited as request.refused;
// one of an unauthenticated caller is counted (RecordUnauthenticatedRefusal).
func (a *Authority) Renew(ctx context.Context, req RenewRequest) (*Issued, error) {
	start := a.clk.Now()
	rec, err := a.renewable(ctx, req.Certificate)
	if err == nil {
		var iss *Issued
		if iss, err = a.renewOnce(ctx, req, rec); err == nil {
			a.metrics.observeIssued(rec.Profile, a.clk.Since(start))
			return iss, nil
		}
	}
	a.refuseRenewal(ctx, req, rec, err)
	return nil, err
}

// renewOnce checks, under the certificate's renewal lock, that rec has no
// successor and that its requester's token stands, then renews it.
func (a *Authority) renewOnce(ctx context.Context, req RenewRequest, rec store.CertRecord) (*Issued, error) {
	h := fnv.New32a()
	h.Write([]byte(rec.IssuerID + "/" + rec.Serial))
	mu := &a.renewLocks[h.Sum32()%uint32(len(a.renewLocks))]
	mu.Lock()
	defer mu.Unlock()
	next, err := a.st.CertificateReplacing(ctx, rec.Serial)
	switch {
	case err == nil:
		if iss, ok := a.repeatedRenewal(req, next); ok {
			return iss, nil
		}
		return nil, errorf(Conflict, "certificate %s was renewed already (by %s, issued %s): a certificate is renewed once; "+
			"renew with its successor", rec.Serial, next.Serial, next.Created.UTC().Format(time.RFC3339))
	case !errors.Is(err, store.ErrNotFound):
		return nil, internal("look up successor", err)
	}
	if err := a.checkRequesterToken(ctx, rec); err != nil {
		return nil, err
	}
	return a.renew(ctx, req, rec)
}

// repeatedRenewal returns next, the successor already issued, when the
// request asks again for what it got: a same-key renewal of a certificate
// whose successor has that very key, is still valid and was made by a
// renewal. Then a client whose answer was lost is not stuck with its old
// certificate, and nothing new is issued: no fan-out, one successor.
func (a *Authority) repeatedRenewal(req RenewRequest, next store.CertRecord) (*Issued, bool) {
	if req.CSR != nil || next.Channel != ChannelRenew || !next.RevokedAt.IsZero() || !a.clk.Now().Before(next.NotAfter) {
		return nil, false
	}
	spki := sha256.Sum256(req.Certificate.RawSubjectPublicKeyInfo)
	if !bytes.Equal(next.SPKIHash, spki[:]) {
		return nil, false
	}
	iss, ok := a.IssuerByID(next.IssuerID)
	if !ok {
		return nil, false
	}
	return &Issued{Record: next, Chain: [][]byte{next.DER, iss.Cert.Raw}, Repeated: true}, true
}

// checkRequesterToken refuses the renewal of a certificate requested with a
// token that was revoked since: revoking the credential ends the chain of
// renewals it started (renewals keep the original requester).
func (a *Authority) checkRequesterToken(ctx context.Context, rec store.CertRecord) error {
	id, ok := strings.CutPrefix(rec.Requester, "token:")
	if !ok {
		return nil
	}
	tok, err := a.st.Token(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil // tokens are never deleted: a requester named otherwise, not a credential
	case err != nil:
		return internal("load requester token", err)
	case !tok.Revoked.IsZero():
		return errorf(Forbidden, "certificate %s was requested with token %s, revoked at %s; it cannot be renewed: request a new certificate",
			rec.Serial, id, tok.Revoked.UTC().Format(time.RFC3339))
	}
	return nil
}

// RecordRenewalRefusal records a renewal a surface refused before it
// reached Renew, such as one whose body did not parse: audited if the
// client certificate is one of this CA's records, counted like any
// unauthenticated refusal otherwise.
func (a *Authority) RecordRenewalRefusal(ctx context.Context, req RenewRequest, err error) {
	rec, _ := a.renewable(ctx, req.Certificate)
	a.refuseRenewal(ctx, req, rec, err)
}

// renewable authenticates leaf and returns its record. The record is
// returned with an error only once leaf is known to be that record (for the
// audit actor); before that it is zero.
func (a *Authority) renewable(ctx context.Context, leaf *x509.Certificate) (store.CertRecord, error) {
	if leaf == nil {
		return store.CertRecord{}, errorf(Unauthorized, "no client certificate: present the certificate to renew in the TLS handshake")
	}
	issuers, err := a.st.Issuers(ctx)
	if err != nil {
		return store.CertRecord{}, internal("load issuers", err)
	}
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	var parent *store.IssuerRecord
	for i := range issuers {
		c, err := x509.ParseCertificate(issuers[i].CertDER)
		if err != nil {
			return store.CertRecord{}, internal("parse issuer "+issuers[i].ID, err)
		}
		switch issuers[i].Kind {
		case "root":
			roots.AddCert(c)
		case "intermediate":
			inters.AddCert(c)
			// Every recorded intermediate counts, not only the active one:
			// after a rotation, certificates of the old one must still renew.
			if parent == nil && bytes.Equal(leaf.RawIssuer, c.RawSubject) && leaf.CheckSignatureFrom(c) == nil {
				parent = &issuers[i]
			}
		}
	}
	if parent == nil {
		return store.CertRecord{}, errorf(Unauthorized, "the client certificate was not issued by this CA")
	}
	now := a.clk.Now()
	if now.After(leaf.NotAfter) {
		return store.CertRecord{}, errorf(Unauthorized, "the client certificate expired at %s; an expired certificate cannot be renewed, request a new one",
			leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(leaf.NotBefore) {
		return store.CertRecord{}, errorf(Unauthorized, "the client certificate is not valid before %s", leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	// A server certificate authenticates a client here, so any EKU will do;
	// the rest of RFC 5280 path validation still applies.
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return store.CertRecord{}, errorf(Unauthorized, "the client certificate does not verify to this CA's root: %v", err)
	}
	serial := SerialString(leaf.SerialNumber)
	recs, _, err := a.st.Certificates(ctx, store.CertFilter{Serial: serial, IssuerID: parent.ID, Limit: 1})
	if err != nil {
		return store.CertRecord{}, internal("look up certificate", err)
	}
	if len(recs) == 0 {
		return store.CertRecord{}, errorf(Unauthorized, "the client certificate (serial %s) is not in this CA's record", serial)
	}
	// A valid signature on unrecorded bytes means a misused or stolen
	// intermediate key: never renew what the record does not hold.
	if !bytes.Equal(recs[0].DER, leaf.Raw) {
		return store.CertRecord{}, errorf(Unauthorized, "the client certificate differs from the recorded certificate with serial %s", serial)
	}
	rec := recs[0]
	// A managed certificate's successor is the CA's to issue (lifecycle/managed):
	// one renewed here would be a version its record does not know.
	if rec.Channel == ChannelManaged {
		return rec, errorf(Forbidden, "certificate %s is managed by the CA, which renews it: fetch GET /v1/managed/%s/bundle",
			serial, strings.TrimPrefix(rec.Requester, "managed:"))
	}
	if !rec.RevokedAt.IsZero() {
		at := rec.RevokedAt.UTC().Format(time.RFC3339)
		if rec.RevokeReason == ReasonCertificateHold {
			return rec, errorf(Forbidden, "certificate %s is on hold (certificateHold) since %s; it cannot be renewed unless released", serial, at)
		}
		return rec, errorf(Forbidden, "certificate %s was revoked (%s) at %s; it cannot be renewed", serial, ReasonName(rec.RevokeReason), at)
	}
	return rec, nil
}

// renew issues the successor of the authenticated certificate rec.
func (a *Authority) renew(ctx context.Context, req RenewRequest, rec store.CertRecord) (*Issued, error) {
	prof := a.profile(rec.Profile)
	if prof == nil {
		return nil, errorf(Rejected, "certificate %s was issued with profile %q, which is not configured any more", rec.Serial, rec.Profile)
	}
	current := certRequest(req.Certificate)
	sreq := SignRequest{Profile: rec.Profile, Requester: rec.Requester, Channel: ChannelRenew, Replaces: rec.Serial, CSR: current,
		Validity: renewalValidity(rec, prof)}
	if req.CSR == nil {
		if err := a.CheckKeyNotBlocked(ctx, current.PublicKey); err != nil {
			return nil, err
		}
		return a.issue(ctx, sreq, prof)
	}
	csr := req.CSR
	if err := csr.CheckSignature(); err != nil {
		return nil, errorf(BadCSR, "CSR signature does not verify: %v", err)
	}
	if k, ok := csr.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); ok && k.Equal(current.PublicKey) {
		return nil, errorf(BadCSR, "the CSR's key is the current certificate's key; to keep the key, renew without a CSR")
	}
	want, err := nameSet(current)
	if err != nil {
		return nil, err
	}
	got, err := nameSet(csr)
	if err != nil {
		return nil, err
	}
	if !slices.Equal(got, want) {
		return nil, errorf(BadCSR, "a rekey keeps the certificate's names: the CSR has %s, the certificate %s",
			strings.Join(got, ", "), strings.Join(want, ", "))
	}
	// The names are the current certificate's, in its order; the key is the
	// CSR's, which issue checks against the profile and the blocklist.
	current.PublicKey, current.PublicKeyAlgorithm = csr.PublicKey, csr.PublicKeyAlgorithm
	return a.issue(ctx, sreq, prof)
}

// renewalValidity is the lifetime of rec's successor: rec's own (from its
// issuance, so without the backdate), capped by the profile's maximum, so
// that renewing never stretches a short-lived certificate.
func renewalValidity(rec store.CertRecord, prof *Profile) time.Duration {
	v := rec.NotAfter.Sub(rec.Created)
	if v <= 0 || rec.Created.IsZero() {
		v = rec.NotAfter.Sub(rec.NotBefore)
	}
	return min(v, time.Duration(prof.MaxValidity))
}

// certRequest restates a certificate's key and names as the unsigned CSR
// issue reads them from.
func certRequest(c *x509.Certificate) *x509.CertificateRequest {
	return &x509.CertificateRequest{
		Subject:            pkix.Name{CommonName: c.Subject.CommonName},
		PublicKey:          c.PublicKey,
		PublicKeyAlgorithm: c.PublicKeyAlgorithm,
		DNSNames:           c.DNSNames,
		IPAddresses:        c.IPAddresses,
		EmailAddresses:     c.EmailAddresses,
		URIs:               c.URIs,
	}
}

// nameSet is a request's normalized names with their types, and its common
// name, sorted, for comparison.
func nameSet(csr *x509.CertificateRequest) ([]string, error) {
	n, cn, err := csrNames(csr)
	if err != nil {
		return nil, err
	}
	out := []string{}
	for _, d := range n.DNS {
		out = append(out, "dns:"+d)
	}
	for _, ip := range n.IPs {
		out = append(out, "ip:"+ip.String())
	}
	for _, e := range n.Email {
		out = append(out, "email:"+e)
	}
	for _, u := range n.URIs {
		out = append(out, "uri:"+u.String())
	}
	if cn != "" {
		out = append(out, "cn:"+cn)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// refuseRenewal records a refused renewal. Until the presented certificate
// is known to be ours (rec is zero) the caller is unauthenticated: the
// refusal is counted and summed, not audited one by one (issue 15). After
// that it is audited as request.refused with the certificate's requester
// as actor; the audit write is best effort.
func (a *Authority) refuseRenewal(ctx context.Context, req RenewRequest, rec store.CertRecord, err error) {
	kind := KindOf(err)
	a.metrics.observeRefused(kind.String())
	if rec.Serial == "" && kind != Internal {
		a.RecordUnauthenticatedRefusal(ctx, UnauthenticatedRefusal{Surface: "renew", Source: req.Source,
			Method: "POST", Path: "/v1/renew", Err: err})
		return
	}
	r := Refusal{Actor: "anonymous", Err: err, Op: "renewal", LogAttrs: []any{"serial", rec.Serial},
		Detail: map[string]string{"request": "renew", "channel": ChannelRenew, "rekey": boolString(req.CSR != nil)}}
	if c := req.Certificate; c != nil {
		// The serial is what the client sent; the target index gets it only
		// in the form RFC 5280 allows.
		if s := c.SerialNumber; s != nil && s.Sign() > 0 && len(s.Bytes()) <= 20 {
			r.Target = SerialString(s)
		}
		r.Detail["cert_issuer"] = clip(c.Issuer.String(), 256)
		r.Detail["names"] = clip(strings.Join(requestedNames(certRequest(c)), ","), 1024)
	}
	if rec.Serial != "" {
		r.Actor = actorOrSystem(rec.Requester)
		r.Detail["issuer"] = rec.IssuerID
		r.Detail["profile"] = rec.Profile
	}
	a.AuditRefusal(ctx, r)
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// clip bounds client-supplied text copied into the audit log, keeping it
// valid UTF-8 so that JSON exports of the event stay byte-exact.
func clip(s string, n int) string {
	if len(s) > n {
		s = s[:n] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}
