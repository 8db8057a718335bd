package acme

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/sigil-ca/sigil/ca/audit"
	"github.com/sigil-ca/sigil/store"
)

// keyChange rolls an account over to a new key (RFC 8555 §7.3.5): the outer
// JWS is signed by the current key, the inner one by the new key.
func (s *Server) keyChange(w http.ResponseWriter, r *http.Request) error {
	p, err := s.readPost(r, false)
	if err != nil {
		return err
	}
	newKey, kc, err := ParseKeyChangeInner(p.jws.Payload, p.jws.URL)
	if err != nil {
		return err
	}
	acct := *p.account
	if kc.Account != p.jws.KID {
		return Malformed("inner account %q does not match the outer kid", kc.Account)
	}
	oldThumb, err := Thumbprint(kc.OldKey)
	if err != nil || oldThumb != acct.KeyThumbprint {
		return Malformed("oldKey is not the account's current key")
	}
	newThumb, err := Thumbprint(newKey)
	if err != nil {
		return Malformed("bad new key")
	}
	if err := s.checkAccountKey(r.Context(), newKey); err != nil {
		return err
	}
	if other, err := s.st.ACMEAccountByKey(r.Context(), s.cfg.Name, newThumb); err == nil {
		w.Header().Set("Location", s.url(r, "/acct/"+other.ID))
		return Malformed("the new key already belongs to an account").WithStatus(http.StatusConflict)
	} else if !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("find account: %w", err)
	}
	keyJSON, err := json.Marshal(newKey.Public())
	if err != nil {
		return Malformed("bad new key")
	}
	acct.KeyJWK, acct.KeyThumbprint = keyJSON, newThumb
	err = update(r.Context(), s.st, func(tx Tx) error {
		if err := tx.UpdateACMEAccount(acct); err != nil {
			return err
		}
		return s.auditTx(tx, &acct, audit.ActionACMEAccountKeyChanged, acct.ID, map[string]string{"old_thumbprint": oldThumb, "new_thumbprint": newThumb})
	})
	if errors.Is(err, store.ErrDuplicate) {
		return Malformed("the new key already belongs to an account").WithStatus(http.StatusConflict)
	}
	if err != nil {
		return fmt.Errorf("change key: %w", err)
	}
	return writeJSON(w, http.StatusOK, s.view(r, acct))
}
