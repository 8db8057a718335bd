package audit

// The audit vocabulary: every Action an event may carry. Events are stored
// and verified forever, so a value never changes once released; a new kind
// of event gets a new constant here, registered in Actions with the same
// sentence as its doc comment (actions_test.go checks both, and that no
// non-test source appends an action that is not one of these).

// Certificates.
const (
	// ActionCertIssued is written in the transaction that records a new
	// certificate, whatever the channel (API, ACME, renewal, managed,
	// bootstrap, rotation, responder or serving certificate).
	ActionCertIssued = "cert.issued"
	// ActionCertRevoked is written in the transaction that revokes a
	// certificate (or puts it on hold), with its RFC 5280 reason.
	ActionCertRevoked = "cert.revoked"
	// ActionCertBulkRevoked is written once per bulk revocation, with what
	// its filter selected and what became of it; each certificate it
	// revoked has its own cert.revoked event.
	ActionCertBulkRevoked = "cert.bulk_revoked"
	// ActionCertUnheld is written when a certificate on hold is released
	// and counts as valid again.
	ActionCertUnheld = "cert.unheld"
	// ActionRequestRefused is written when a request of an authenticated
	// or known caller to issue, renew, revoke, unhold or manage a
	// certificate is refused, with the reason.
	ActionRequestRefused = "request.refused"
	// ActionKeyBlocked is written when a public key is blocked after a
	// keyCompromise revocation, before its other certificates are revoked.
	ActionKeyBlocked = "key.blocked"
	// ActionCRLPublished is written when a CRL is signed and stored, with
	// the target issuer/shard (the root's CRL, or an intermediate's shard).
	ActionCRLPublished = "crl.published"
)

// The authority and its keys.
const (
	// ActionCAInitialized is written once, when a new CA's root is
	// created (sigil init, or sigil dev on an empty data directory).
	ActionCAInitialized = "ca.initialized"
	// ActionIntermediateRotated is written when a new intermediate takes
	// over issuance from the previous one.
	ActionIntermediateRotated = "ca.intermediate.rotated"
	// ActionIntermediateDestroyed is written when a retired intermediate's
	// key is destroyed after its last certificate expired.
	ActionIntermediateDestroyed = "ca.intermediate.destroyed"
	// ActionKEKCreated is written when a new CA's first
	// key-encryption key is created.
	ActionKEKCreated = "kek.created"
	// ActionKEKRotationStarted is written when a KEK rotation begins: new
	// keys are sealed under the new KEK from then on.
	ActionKEKRotationStarted = "kek.rotation.started"
	// ActionKEKRotated is written when every data key has been re-wrapped
	// under the new KEK and the rotation ends.
	ActionKEKRotated = "kek.rotated"
	// ActionKEKRewrapRefused is written when a passphrase change is refused
	// because the current passphrase is wrong.
	ActionKEKRewrapRefused = "kek.rewrap.refused"
	// ActionKeyGenerated is written in the transaction that stores a newly
	// generated key or secret.
	ActionKeyGenerated = "key.generated"
	// ActionKeyUnwrapped is written each time a stored key or secret is
	// decrypted for use.
	ActionKeyUnwrapped = "key.unwrapped"
	// ActionKeyRewrapped is written when a key's data key is re-wrapped
	// under another KEK (its ciphertext is untouched).
	ActionKeyRewrapped = "key.rewrapped"
	// ActionKeyRetired is written when a key stops being used for anything
	// new.
	ActionKeyRetired = "key.retired"
	// ActionKeyDestroyed is written when a key is crypto-shredded: its
	// wrapped data key and ciphertext are erased.
	ActionKeyDestroyed = "key.destroyed"
	// ActionKeyExported is written when a managed key leaves the CA in a
	// bundle delivered to the identity it belongs to.
	ActionKeyExported = "key.exported"
)

// Access: tokens, reads and sessions.
const (
	// ActionTokenCreated is written when an API token is created.
	ActionTokenCreated = "token.created"
	// ActionTokenRevoked is written when an API token is revoked.
	ActionTokenRevoked = "token.revoked"
	// ActionAccessRefused is written when an authenticated caller is
	// refused for its credentials, such as a token of the wrong role.
	ActionAccessRefused = "access.refused"
	// ActionAccessRefusedSummary is written at most once a minute per
	// source, summing the requests refused before their caller
	// authenticated.
	ActionAccessRefusedSummary = "access.refused.summary"
	// ActionAuditRead is written for each read by an auditor and each page
	// view of the auditor web page.
	ActionAuditRead = "audit.read"
	// ActionUILogin is written when a token opens a session on the auditor
	// web page.
	ActionUILogin = "ui.login"
	// ActionUILoginRefused is written when a token that authenticates is
	// refused a session on the auditor web page for its role.
	ActionUILoginRefused = "ui.login.refused"
	// ActionUILogout is written when a session of the auditor web page is
	// ended by its user.
	ActionUILogout = "ui.logout"
)

// CA-managed certificates.
const (
	// ActionManagedCreated is written when a CA-managed certificate is
	// created with its key and first certificate.
	ActionManagedCreated = "managed.created"
	// ActionManagedRenewed is written when a CA-managed certificate is
	// renewed (and, on a key rotation, re-keyed).
	ActionManagedRenewed = "managed.renewed"
	// ActionManagedRenewFailed is written when a scheduled or manual
	// renewal of a CA-managed certificate fails.
	ActionManagedRenewFailed = "managed.renew.failed"
	// ActionManagedDeleted is written when a CA-managed certificate stops
	// being renewed.
	ActionManagedDeleted = "managed.deleted"
	// ActionManagedBundleFetched is written when a CA-managed bundle (key
	// and chain) is delivered to its identity.
	ActionManagedBundleFetched = "managed.bundle.fetched"
	// ActionManagedBundleRefused is written when a request of a known
	// caller for a CA-managed bundle is refused.
	ActionManagedBundleRefused = "managed.bundle.refused"
)

// ACME (RFC 8555); the actor is the account.
const (
	// ActionACMEAccountCreated is written when an ACME account is
	// registered.
	ActionACMEAccountCreated = "acme.account.created"
	// ActionACMEAccountUpdated is written when an ACME account's contacts
	// change.
	ActionACMEAccountUpdated = "acme.account.updated"
	// ActionACMEAccountDeactivated is written when an ACME account
	// deactivates itself.
	ActionACMEAccountDeactivated = "acme.account.deactivated"
	// ActionACMEAccountKeyChanged is written when an ACME account rolls
	// over to a new key.
	ActionACMEAccountKeyChanged = "acme.account.key_changed"
	// ActionACMEEABCreated is written when an external account binding
	// key is created for ACME registration.
	ActionACMEEABCreated = "acme.eab.created"
	// ActionACMEOrderCreated is written when an ACME order is created.
	ActionACMEOrderCreated = "acme.order.created"
	// ActionACMEOrderFinalized is written when an ACME order's finalize
	// ends: valid with its certificate, back to ready when the CSR is
	// refused, or invalid.
	ActionACMEOrderFinalized = "acme.order.finalized"
	// ActionACMEOrderCAARefused is written when a CAA recheck at finalize
	// refuses an order's identifier and the order becomes invalid.
	ActionACMEOrderCAARefused = "acme.order.caa_refused"
	// ActionACMEAuthzDeactivated is written when an ACME client
	// deactivates an authorization.
	ActionACMEAuthzDeactivated = "acme.authz.deactivated"
	// ActionACMEChallengeStarted is written when an ACME client asks for a
	// challenge to be validated.
	ActionACMEChallengeStarted = "acme.challenge.started"
	// ActionACMEChallengeValidated is written when the validation of an
	// ACME challenge ends, valid or invalid.
	ActionACMEChallengeValidated = "acme.challenge.validated"
)

// Operation.
const (
	// ActionConfigLoaded is written each time the server starts, with the
	// hash of the configuration it loaded.
	ActionConfigLoaded = "config.loaded"
	// ActionAuditBrokenAccepted is written when the server is started on
	// purpose over an audit chain that fails verification.
	ActionAuditBrokenAccepted = "audit.broken_accepted"
	// ActionJobTriggered is written when an operator runs a scheduled job
	// by hand.
	ActionJobTriggered = "job.triggered"
	// ActionJobRun is written when a job that changes state ends having
	// done something, or failed.
	ActionJobRun = "job.run"
	// ActionTidyCompleted is written when a tidy run removed something, or
	// failed.
	ActionTidyCompleted = "tidy.completed"
)

// ActionInfo is one registered audit action and when it is written.
type ActionInfo struct {
	Action      string
	Description string
}

// Actions returns every registered audit action with its description, in a
// fresh slice ordered as declared (by area). It is the list the docs table
// of actions is generated from.
func Actions() []ActionInfo {
	return []ActionInfo{
		{ActionCertIssued, "is written in the transaction that records a new certificate, whatever the channel (API, ACME, renewal, managed, bootstrap, rotation, responder or serving certificate)."},
		{ActionCertRevoked, "is written in the transaction that revokes a certificate (or puts it on hold), with its RFC 5280 reason."},
		{ActionCertBulkRevoked, "is written once per bulk revocation, with what its filter selected and what became of it; each certificate it revoked has its own cert.revoked event."},
		{ActionCertUnheld, "is written when a certificate on hold is released and counts as valid again."},
		{ActionRequestRefused, "is written when a request of an authenticated or known caller to issue, renew, revoke, unhold or manage a certificate is refused, with the reason."},
		{ActionKeyBlocked, "is written when a public key is blocked after a keyCompromise revocation, before its other certificates are revoked."},
		{ActionCRLPublished, "is written when a CRL is signed and stored, with the target issuer/shard (the root's CRL, or an intermediate's shard)."},

		{ActionCAInitialized, "is written once, when a new CA's root is created (sigil init, or sigil dev on an empty data directory)."},
		{ActionIntermediateRotated, "is written when a new intermediate takes over issuance from the previous one."},
		{ActionIntermediateDestroyed, "is written when a retired intermediate's key is destroyed after its last certificate expired."},
		{ActionKEKCreated, "is written when a new CA's first key-encryption key is created."},
		{ActionKEKRotationStarted, "is written when a KEK rotation begins: new keys are sealed under the new KEK from then on."},
		{ActionKEKRotated, "is written when every data key has been re-wrapped under the new KEK and the rotation ends."},
		{ActionKEKRewrapRefused, "is written when a passphrase change is refused because the current passphrase is wrong."},
		{ActionKeyGenerated, "is written in the transaction that stores a newly generated key or secret."},
		{ActionKeyUnwrapped, "is written each time a stored key or secret is decrypted for use."},
		{ActionKeyRewrapped, "is written when a key's data key is re-wrapped under another KEK (its ciphertext is untouched)."},
		{ActionKeyRetired, "is written when a key stops being used for anything new."},
		{ActionKeyDestroyed, "is written when a key is crypto-shredded: its wrapped data key and ciphertext are erased."},
		{ActionKeyExported, "is written when a managed key leaves the CA in a bundle delivered to the identity it belongs to."},

		{ActionTokenCreated, "is written when an API token is created."},
		{ActionTokenRevoked, "is written when an API token is revoked."},
		{ActionAccessRefused, "is written when an authenticated caller is refused for its credentials, such as a token of the wrong role."},
		{ActionAccessRefusedSummary, "is written at most once a minute per source, summing the requests refused before their caller authenticated."},
		{ActionAuditRead, "is written for each read by an auditor and each page view of the auditor web page."},
		{ActionUILogin, "is written when a token opens a session on the auditor web page."},
		{ActionUILoginRefused, "is written when a token that authenticates is refused a session on the auditor web page for its role."},
		{ActionUILogout, "is written when a session of the auditor web page is ended by its user."},

		{ActionManagedCreated, "is written when a CA-managed certificate is created with its key and first certificate."},
		{ActionManagedRenewed, "is written when a CA-managed certificate is renewed (and, on a key rotation, re-keyed)."},
		{ActionManagedRenewFailed, "is written when a scheduled or manual renewal of a CA-managed certificate fails."},
		{ActionManagedDeleted, "is written when a CA-managed certificate stops being renewed."},
		{ActionManagedBundleFetched, "is written when a CA-managed bundle (key and chain) is delivered to its identity."},
		{ActionManagedBundleRefused, "is written when a request of a known caller for a CA-managed bundle is refused."},

		{ActionACMEAccountCreated, "is written when an ACME account is registered."},
		{ActionACMEAccountUpdated, "is written when an ACME account's contacts change."},
		{ActionACMEAccountDeactivated, "is written when an ACME account deactivates itself."},
		{ActionACMEAccountKeyChanged, "is written when an ACME account rolls over to a new key."},
		{ActionACMEEABCreated, "is written when an external account binding key is created for ACME registration."},
		{ActionACMEOrderCreated, "is written when an ACME order is created."},
		{ActionACMEOrderFinalized, "is written when an ACME order's finalize ends: valid with its certificate, back to ready when the CSR is refused, or invalid."},
		{ActionACMEOrderCAARefused, "is written when a CAA recheck at finalize refuses an order's identifier and the order becomes invalid."},
		{ActionACMEAuthzDeactivated, "is written when an ACME client deactivates an authorization."},
		{ActionACMEChallengeStarted, "is written when an ACME client asks for a challenge to be validated."},
		{ActionACMEChallengeValidated, "is written when the validation of an ACME challenge ends, valid or invalid."},

		{ActionConfigLoaded, "is written each time the server starts, with the hash of the configuration it loaded."},
		{ActionAuditBrokenAccepted, "is written when the server is started on purpose over an audit chain that fails verification."},
		{ActionJobTriggered, "is written when an operator runs a scheduled job by hand."},
		{ActionJobRun, "is written when a job that changes state ends having done something, or failed."},
		{ActionTidyCompleted, "is written when a tidy run removed something, or failed."},
	}
}
