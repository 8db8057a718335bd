package store

import (
	"context"
	"errors"
	"time"

	"github.com/sigil-ca/sigil/ca/audit"
)

// Sentinel errors every backend returns; callers test them with errors.Is.
var (
	// ErrNotFound means the requested record does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrDuplicate means a uniqueness constraint (such as serial per issuer) was violated.
	ErrDuplicate = errors.New("store: duplicate")
	// ErrClosed means the store was closed.
	ErrClosed = errors.New("store: closed")
	// ErrFull is a write refused because the database or its disk is full
	// (SQLITE_FULL): nothing of it was committed, and reads still work.
	// Callers that can defer a write (a cache copy) stop and retry later.
	ErrFull = errors.New("store: database or disk is full")
	// ErrAlreadyRevoked means a certificate to revoke is revoked already
	// (certificateHold included).
	ErrAlreadyRevoked = errors.New("store: already revoked")
	// ErrNotOnHold means a certificate to release from hold is not revoked
	// with reason certificateHold.
	ErrNotOnHold = errors.New("store: not on hold")
	// ErrStateChanged means a guarded transition found its row in another
	// state than the one it moves from: someone else moved it first.
	ErrStateChanged = errors.New("store: state changed")
)

// Key states.
const (
	KeyActive    = "active"
	KeyRetired   = "retired"
	KeyDestroyed = "destroyed"
)

// KEKRecord is a key-encryption key's public description: KDF parameters and
// a check value, never key material.
type KEKRecord struct {
	ID      string
	Backend string
	Params  []byte // backend-specific JSON (KDF parameters)
	Check   []byte
	State   string
	Created time.Time
}

// KeyRecord is one row of the key inventory. Private keys are present only
// as ciphertext wrapped under KEKID.
type KeyRecord struct {
	ID         string
	Purpose    string // root, intermediate, audit, ...
	Algorithm  string
	Backend    string
	State      string
	PublicKey  []byte // PKIX DER
	KEKID      string
	WrappedDEK []byte
	Ciphertext []byte
	Created    time.Time
	Rotated    time.Time
	LastUsed   time.Time
	Destroyed  time.Time
}

// IssuerRecord is a CA certificate this authority holds the key for.
type IssuerRecord struct {
	ID       string
	Kind     string // root or intermediate
	ParentID string
	KeyID    string
	CertDER  []byte
	State    string
	Created  time.Time
}

// CertRecord is an issued certificate as recorded before it is returned.
type CertRecord struct {
	ID           int64 // assigned by the store; increases with insertion order
	IssuerID     string
	Serial       string // lower-case hex, no leading zeros
	Subject      string
	SANs         []string
	NotBefore    time.Time
	NotAfter     time.Time
	KeyAlgorithm string
	Profile      string
	Requester    string
	Channel      string
	DER          []byte
	Created      time.Time
	RevokedAt    time.Time // zero: not revoked
	RevokeReason int       // RFC 5280 §5.3.1 CRLReason code; meaningful only when RevokedAt is set
	// InvalidityDate is when the key is known or suspected to have been
	// compromised (RFC 5280 §5.3.2); zero when not given or not revoked.
	InvalidityDate time.Time
	// Replaces is the serial of the certificate this one renews (RFC 9773
	// "replaces"), or "".
	Replaces string
	// SPKIHash is the SHA-256 of the certificate's SubjectPublicKeyInfo
	// (SPKIHash); InsertCertificate computes it from DER when empty.
	SPKIHash []byte
	// CRLShard is the CRL the certificate's distribution point names: 0 the
	// issuer's whole CRL, 1..N one partition of it.
	CRLShard int
	// Archived is when tidy took the certificate, expired for longer than
	// the retention, out of the hot-path indexes (zero: live). The record
	// itself stays, queryable like any other.
	Archived time.Time
}

// TokenRecord is an API token; only a hash of its secret is kept.
type TokenRecord struct {
	ID          string
	SecretHash  []byte
	Role        string
	Profiles    []string
	Description string
	Created     time.Time
	Expires     time.Time // zero: never
	Revoked     time.Time // zero: not revoked
	// Managed names the managed certificate a "managed" token may fetch the
	// bundle of; "" for every other role.
	Managed string
}

// CertFilter selects certificates. Zero fields do not filter. Name matches
// are case-insensitive; names are the subject common name and every SAN.
type CertFilter struct {
	Serial       string
	Name         string // substring of any name
	NameExact    string // a name equal to this
	NameSuffix   string // a name ending in this, such as ".example.com"
	Profile      string
	Requester    string
	IssuerID     string
	IssuerKeyID  string // the key id of the issuer that signed them
	Channel      string // api, acme, managed, renew, internal, init
	ACMEAccount  string // the ACME account whose order it finalized
	KeyAlgorithm string // as recorded: ecdsa-p256, rsa-2048, ed25519, …
	Status       string // valid, expired, revoked
	// Half-open ranges [After, Before) on issuance, expiry and revocation.
	IssuedAfter    time.Time
	IssuedBefore   time.Time
	ExpiringAfter  time.Time
	ExpiringBefore time.Time
	RevokedAfter   time.Time
	RevokedBefore  time.Time
	Now            time.Time // reference time for Status
	Sort           CertSort
	// After resumes a query behind the row it names (keyset pagination);
	// the zero cursor starts at the first row.
	After CertCursor
	Limit int // rows per page, 1..1000; 100 if unset
}

// CertSort orders certificates. Every order ends in the record id, so it
// is total and a cursor names one position.
type CertSort int

// The orders a certificate query can take.
const (
	SortIssuedDesc CertSort = iota // newest first
	SortIssuedAsc
	SortExpiryAsc // soonest expiry first
	SortExpiryDesc
)

// CertSorts names the orders as the API and CLI spell them.
var CertSorts = map[string]CertSort{
	"issued_desc": SortIssuedDesc, "issued_asc": SortIssuedAsc,
	"expiry_asc": SortExpiryAsc, "expiry_desc": SortExpiryDesc,
}

// CertCursor is a position in a sorted certificate query: the sort key
// (issuance or expiry time, Unix nanoseconds) and id of a row.
type CertCursor struct {
	Key int64
	ID  int64
}

// IsZero reports whether c is the start of a query.
func (c CertCursor) IsZero() bool { return c == CertCursor{} }

// CursorOf returns the cursor that resumes a query sorted by s after c.
func (s CertSort) CursorOf(c CertRecord) CertCursor {
	if s == SortExpiryAsc || s == SortExpiryDesc {
		return CertCursor{Key: c.NotAfter.UnixNano(), ID: c.ID}
	}
	return CertCursor{Key: c.Created.UnixNano(), ID: c.ID}
}

// CertGroup is what CertificateSummary counts by.
type CertGroup string

// The groupings of a certificate summary.
const (
	GroupProfile   CertGroup = "profile"
	GroupRequester CertGroup = "requester"
	GroupIssuer    CertGroup = "issuer"
	GroupChannel   CertGroup = "channel"
	GroupDay       CertGroup = "day" // issuance day, UTC, as 2006-01-02
	GroupStatus    CertGroup = "status"
)

// SummaryRow is one group of a certificate summary.
type SummaryRow struct {
	Key   string
	Count int64
}

// AuditFilter selects audit events, oldest first.
type AuditFilter struct {
	After  time.Time
	Before time.Time
	Action string // exact, or a prefix ending in "." such as "cert."
	Actor  string
	Target string
	Cursor int64 // return events with Seq above this
	Limit  int
}

// Store is what the CA persists, the interface a backend implements whole
// (storetest.Run checks it); consumers take only their own narrow views of
// it. Reads may run concurrently with writes and see only committed data.
type Store interface {
	// WithTx runs fn inside a transaction and returns after it is durably
	// committed, or rolled back if fn (or the commit) fails. fn runs on the
	// store's writer goroutine and must not block on anything but tx.
	WithTx(ctx context.Context, fn func(tx Tx) error) error

	// Checkpoint signs the current audit head now, if it is not signed yet.
	Checkpoint(ctx context.Context) error
	// Health reports the database's role (RoleEmbedded, RolePrimary,
	// RoleStandby) and a standby's lag; RoleUnreachable with an error when
	// it does not answer.
	Health(ctx context.Context) (Health, error)

	// Key returns the key with id, whatever its state; ErrNotFound if none.
	Key(ctx context.Context, id string) (KeyRecord, error)
	// Keys returns every key, retired and destroyed ones included, oldest
	// first (by creation time, then id); none is an empty result, not an error.
	Keys(ctx context.Context) ([]KeyRecord, error)
	// KEK returns the KEK with id, whatever its state; ErrNotFound if none.
	KEK(ctx context.Context, id string) (KEKRecord, error)
	// ActiveKEK returns the KEK new keys are wrapped under; ErrNotFound before init.
	ActiveKEK(ctx context.Context) (KEKRecord, error)
	// Issuer returns the issuer with id; ErrNotFound if none.
	Issuer(ctx context.Context, id string) (IssuerRecord, error)
	// Issuers returns every issuer, oldest first (by creation time, then id).
	Issuers(ctx context.Context) ([]IssuerRecord, error)
	// IssuerLastExpiry returns the latest notAfter of the certificates
	// issuerID issued, revoked or not, leaving out the profiles skip (e.g.
	// the CA's own OCSP responder certificates); the zero time if none.
	IssuerLastExpiry(ctx context.Context, issuerID string, skip ...string) (time.Time, error)

	// Certificate returns the certificate with serial (any issuer); ErrNotFound if none.
	Certificate(ctx context.Context, serial string) (CertRecord, error)
	// CertificateReplacing returns the first certificate recorded as
	// replacing serial (RFC 9773); ErrNotFound if none.
	CertificateReplacing(ctx context.Context, serial string) (CertRecord, error)
	// KeyBlocked returns the blocklist entry for a key hash; ErrNotFound if
	// the key is not blocked.
	KeyBlocked(ctx context.Context, spkiHash []byte) (BlockedKey, error)
	// Certificates returns a page of matches in f.Sort order and the cursor of
	// the next page (zero: no more).
	Certificates(ctx context.Context, f CertFilter) ([]CertRecord, CertCursor, error)
	// ScanCertificates calls fn with every certificate f selects, in f.Sort
	// order from f.After, ignoring f.Limit, in constant memory.
	ScanCertificates(ctx context.Context, f CertFilter, fn func(CertRecord) error) error
	// CertificateSummary counts the certificates f selects by group, largest
	// group first (days: oldest first), and returns the total.
	CertificateSummary(ctx context.Context, f CertFilter, by CertGroup) ([]SummaryRow, int64, error)

	// AuditEvents returns matches oldest first and the cursor of the next page (0: no more).
	AuditEvents(ctx context.Context, f AuditFilter) ([]audit.Event, int64, error)
	// ScanAudit calls fn for every event in the order rows were stored, streaming,
	// so that a verifier sees deleted or reordered rows as they are.
	ScanAudit(ctx context.Context, fn func(audit.Event) error) error
	// Checkpoints returns every signed audit checkpoint, ordered by seq.
	Checkpoints(ctx context.Context) ([]audit.Checkpoint, error)
	// AuditHead returns the last committed event's seq and hash, or Seq 0 and
	// the genesis hash when the log is empty.
	AuditHead(ctx context.Context) (audit.Head, error)

	// The transparency log of issued certificates: InsertCertificate
	// appends leaf audit.LogLeaf(Created, DER) at the next index in the
	// same savepoint (see migrations/0012_transparency_log.sql). Proofs and
	// roots use RFC 9162 §2.1 hashing and read O(log n) stored nodes.

	// LogSize returns the number of leaves committed.
	LogSize(ctx context.Context) (uint64, error)
	// LogRoot returns the root hash of the tree of the first size leaves
	// (audit.EmptyRoot for 0); ErrNotFound if size exceeds LogSize.
	LogRoot(ctx context.Context, size uint64) ([]byte, error)
	// LogInclusionProof returns the RFC 9162 §2.1.3 inclusion proof of leaf
	// index in the tree of size leaves; ErrNotFound unless index < size <=
	// LogSize.
	LogInclusionProof(ctx context.Context, index, size uint64) ([][]byte, error)
	// LogConsistencyProof returns the RFC 9162 §2.1.4 consistency proof
	// between trees of size1 and size2 leaves (empty when size1 is 0 or
	// equals size2); ErrNotFound unless size1 <= size2 <= LogSize.
	LogConsistencyProof(ctx context.Context, size1, size2 uint64) ([][]byte, error)
	// LogEntries returns the leaves with index in [start, end), at most
	// MaxLogEntries of them (end is clipped), by index; an empty range or
	// one past the log is an empty result.
	LogEntries(ctx context.Context, start, end uint64) ([]LogEntry, error)
	// LogEntryBySerial returns the first leaf whose certificate has serial
	// (any issuer); ErrNotFound if none.
	LogEntryBySerial(ctx context.Context, serial string) (LogEntry, error)
	// ScanLog calls fn for every leaf by index, with its certificate record,
	// streaming in pages; a leaf whose certificate row is gone is skipped,
	// so verifiers see a gap. fn's error stops the scan and is returned.
	ScanLog(ctx context.Context, fn func(LogEntry) error) error
	// LogNode returns the stored hash of the completed subtree (level,
	// index), a leaf hash at level 0; ErrNotFound if none is stored.
	LogNode(ctx context.Context, level uint, index uint64) ([]byte, error)
	// CertificateCount returns how many certificate rows exist, archived
	// ones included: each has one leaf.
	CertificateCount(ctx context.Context) (int64, error)
	// SignTreeHead signs and stores a head of the committed tree, on the
	// writer so that no append interleaves, unless the latest stored head
	// has the same size and is younger than maxAge: then it returns that
	// one and false. It refuses (and stores nothing) when the latest head
	// is larger than the log or has the same size and another root.
	SignTreeHead(ctx context.Context, maxAge time.Duration) (audit.TreeHead, bool, error)
	// LatestTreeHead returns the largest, then newest, signed tree head;
	// ErrNotFound if none was signed.
	LatestTreeHead(ctx context.Context) (audit.TreeHead, error)
	// TreeHeadBySize returns the newest signed head of size leaves;
	// ErrNotFound if none.
	TreeHeadBySize(ctx context.Context, size uint64) (audit.TreeHead, error)
	// TreeHeads returns every signed tree head by size, then time.
	TreeHeads(ctx context.Context) ([]audit.TreeHead, error)

	// Token returns the token with id, even if revoked or expired; ErrNotFound if none.
	Token(ctx context.Context, id string) (TokenRecord, error)
	// Tokens returns every token, revoked and expired ones included, oldest
	// first (by creation time, then id).
	Tokens(ctx context.Context) ([]TokenRecord, error)
	// Setting returns the value stored under name; ErrNotFound if it was never put.
	Setting(ctx context.Context, name string) ([]byte, error)

	// ACMEAccount returns the ACME account with id, whatever its status;
	// ErrNotFound if none.
	ACMEAccount(ctx context.Context, id string) (ACMEAccount, error)
	// ACMEAccountByKey returns the account of endpoint whose key has the
	// RFC 7638 thumbprint, whatever its status; ErrNotFound if none.
	ACMEAccountByKey(ctx context.Context, endpoint, thumbprint string) (ACMEAccount, error)
	// ACMEOrder returns the order with id, whatever its status; ErrNotFound if none.
	ACMEOrder(ctx context.Context, id string) (ACMEOrder, error)
	// ACMECertOrder returns the order whose finalization issued the
	// certificate with serial (the first, should there be several);
	// ErrNotFound if none, as for a certificate not issued through ACME. A
	// valid order is kept until its certificate is archived (tidy).
	ACMECertOrder(ctx context.Context, serial string) (ACMEOrder, error)
	// ACMEOrders returns up to limit (default 100, at most 1000) of the
	// account's orders, newest first (by Created, then id descending), and an
	// opaque cursor for the next page: "" starts at the newest and is returned
	// after the last page. A page never repeats or skips an order that existed
	// when paging began. An account without orders (or unknown) yields an
	// empty result, not an error; a malformed cursor is an error.
	ACMEOrders(ctx context.Context, accountID string, cursor string, limit int) ([]ACMEOrder, string, error)
	// ACMEAuthz returns the authorization with id and its challenges in the
	// order they were inserted, whatever its status; ErrNotFound if none.
	ACMEAuthz(ctx context.Context, id string) (ACMEAuthz, error)
	// ACMEChallenge returns the challenge with id; ErrNotFound if none.
	ACMEChallenge(ctx context.Context, id string) (ACMEChallenge, error)
	// ACMEReusableAuthz returns, with its challenges, the account's "valid"
	// authorization for exactly this identifier and wildcard flag that
	// expires after now, the latest-expiring first (ties by id); ErrNotFound
	// if none. The status is taken as stored: an authorization past its
	// expiry is never returned whatever its status says. Pass now plus a
	// margin to require that much remaining lifetime.
	ACMEReusableAuthz(ctx context.Context, accountID string, id ACMEIdentifier, wildcard bool, now time.Time) (ACMEAuthz, error)
	// EABKey returns the external account binding key with id, used or
	// revoked ones included; ErrNotFound if none.
	EABKey(ctx context.Context, id string) (EABKey, error)

	// OCSPResponses calls fn, streaming, for every pre-signed OCSP response
	// of issuerID whose nextUpdate is after now, in no particular order; an
	// error from fn stops the scan and is returned.
	OCSPResponses(ctx context.Context, issuerID string, now time.Time, fn func(OCSPResponse) error) error
	// CertStatuses calls fn for every certificate of issuerID whose notAfter
	// is after now, in insertion order (ascending ID), reading in bounded
	// pages so that memory stays bounded and no read transaction spans fn
	// calls: a certificate inserted or revoked during the scan may or may
	// not be seen. An error from fn stops the scan and is returned.
	CertStatuses(ctx context.Context, issuerID string, now time.Time, fn func(CertStatus) error) error
	// RevokedCertificates calls fn, streaming (rows are never all in
	// memory), for every certificate of issuerID in CRL shard that is revoked
	// and either expires at or after notAfterSince or was revoked at or after
	// it, in no particular order. fn's error stops the scan and is returned.
	RevokedCertificates(ctx context.Context, issuerID string, shard int, notAfterSince time.Time, fn func(RevokedEntry) error) error
	// CRL returns the latest CRL stored for issuerID and shard; ErrNotFound if none.
	CRL(ctx context.Context, issuerID string, shard int) (CRLRecord, error)
	// CRLHead is CRL without the DER; ErrNotFound if none.
	CRLHead(ctx context.Context, issuerID string, shard int) (CRLHead, error)
	// LatestJobRuns returns the latest run of every job that has run, by job name.
	LatestJobRuns(ctx context.Context) (map[string]JobRun, error)
	// JobRuns returns up to limit runs of job, newest first.
	JobRuns(ctx context.Context, job string, limit int) ([]JobRun, error)
	// CRLs returns the latest CRL of every shard of issuerID, by shard; none
	// is an empty result, not an error.
	CRLs(ctx context.Context, issuerID string) ([]CRLRecord, error)
	// ExpiringCertificates returns up to limit (default and at most 1000)
	// live (not archived) certificates whose notAfter is in (from, until],
	// that are not revoked (on hold included) and not replaced by an
	// unrevoked certificate (one whose Replaces names their serial), ordered
	// by notAfter then ID, starting after the cursor; each with the smallest
	// threshold of its delivered expiry notices. Fewer than limit means the
	// last page.
	ExpiringCertificates(ctx context.Context, from, until time.Time, after ExpiryCursor, limit int) ([]ExpiringCert, error)

	// Managed returns the managed certificate name, deleted or not;
	// ErrNotFound if none.
	Managed(ctx context.Context, name string) (ManagedRecord, error)
	// ManagedList returns up to limit (at most 1000) managed certificates
	// whose name sorts after after, by name; deleted ones only if deleted.
	ManagedList(ctx context.Context, after string, limit int, deleted bool) ([]ManagedRecord, error)
	// ManagedVersions returns every version of name, newest first; none
	// (an unknown name) is an empty result, not an error.
	ManagedVersions(ctx context.Context, name string) ([]ManagedVersion, error)
	// ManagedVersionBySerial returns the version whose certificate has
	// serial; ErrNotFound if no managed certificate has it.
	ManagedVersionBySerial(ctx context.Context, serial string) (ManagedVersion, error)
	// ManagedKeys returns the keys name was issued with, destroyed ones
	// included, by key id.
	ManagedKeys(ctx context.Context, name string) ([]ManagedKey, error)
	// DueManaged returns up to limit active managed certificates whose
	// RenewDue is at or before now and after the cursor, in (RenewDue,
	// Name) order, through an index: pass the last one's (RenewDue, Name)
	// as the next cursor.
	DueManaged(ctx context.Context, now time.Time, after DueCursor, limit int) ([]ManagedRecord, error)
	// ManagedIssuedElsewhere reports whether an active managed certificate's
	// current version was issued by another issuer than activeIssuer.
	ManagedIssuedElsewhere(ctx context.Context, activeIssuer string) (bool, error)
	// DueManagedRevocations returns up to limit superseded versions whose
	// RevokeDue is set, at or before now and after the cursor, in
	// (RevokeDue, Serial) order, through an index.
	DueManagedRevocations(ctx context.Context, now time.Time, after DueCursor, limit int) ([]ManagedVersion, error)
	// DueManagedKeys returns up to limit managed keys whose DestroyDue is
	// set, at or before now and after the cursor, in (DestroyDue, KeyID)
	// order, through an index.
	DueManagedKeys(ctx context.Context, now time.Time, after DueCursor, limit int) ([]ManagedKey, error)

	// Close waits for queued transactions, then closes the store; later calls
	// return the first call's result. WithTx and Checkpoint then return ErrClosed.
	Close() error
}

// Tx is a write transaction; its methods are valid only inside WithTx. A
// backend implements it whole; each consumer's callbacks see only its own
// view (acme.Tx, revocation.Tx, lifecycle.Tx).
type Tx interface {
	// StartJobRun records r (Job, Trigger, Started) as running and sets its ID.
	StartJobRun(r *JobRun) error
	// FinishJobRun records the end of the running run r.ID: Ended, Result
	// (JobOK or JobFailed), Error and Items. ErrNotFound if it is not running.
	FinishJobRun(r JobRun) error
	// InterruptJobRuns marks every run still recorded as running as
	// interrupted at at, with why; called at start, when none can be.
	InterruptJobRuns(at time.Time, why string) (int64, error)

	// AppendAudit assigns e its sequence number, previous hash and hash, and
	// appends it. The chain head advances only if the transaction commits.
	AppendAudit(e audit.Event) (audit.Event, error)

	// InsertKEK inserts a new KEK; ErrDuplicate if the id exists.
	InsertKEK(k KEKRecord) error
	// SetKEKState sets the state of the KEK with id (setting the same state
	// again succeeds); ErrNotFound if no KEK has that id.
	SetKEKState(id, state string) error
	// InsertKey inserts a new key; ErrDuplicate if the id exists.
	InsertKey(k KeyRecord) error
	// RewrapKey replaces a key's wrapped data key and KEK id; the ciphertext is untouched.
	// ErrNotFound if no key has that id or the key is destroyed.
	RewrapKey(id, kekID string, wrappedDEK []byte, rotated time.Time) error
	// TouchKey sets the key's last_used to at if that is later (it never moves
	// back); a missing key is not an error.
	TouchKey(id string, at time.Time) error
	// RetireKey moves an active key to retired (no new use; existing
	// signatures stay valid) and sets its rotated time to at. ErrNotFound if
	// no active key has that id: retiring twice is an error, not a no-op.
	RetireKey(id string, at time.Time) error
	// DestroyKey crypto-shreds a retired key: its wrapped data key and
	// ciphertext are erased (NULL), its state becomes destroyed and its
	// destroyed time at; the public key and the rest of the row stay.
	// ErrNotFound if no retired key has that id (an active key is retired
	// first; a destroyed one stays as it is).
	DestroyKey(id string, at time.Time) error
	// Keys returns every key as this transaction sees it (its own writes
	// included), oldest first (by creation time, then id).
	Keys() ([]KeyRecord, error)
	// InsertIssuer inserts a new issuer; ErrDuplicate if the id exists. Its
	// KeyID must name an existing key.
	InsertIssuer(i IssuerRecord) error
	// SetIssuerState moves issuer id from state from to state to (an
	// intermediate rotated out: active to retired; its key destroyed:
	// retired to destroyed). ErrNotFound if no issuer id is in state from.
	SetIssuerState(id, from, to string) error
	// InsertCertificate inserts c and sets c.ID; ErrDuplicate if the serial is
	// already used by the issuer.
	InsertCertificate(c *CertRecord) error
	// InsertToken inserts a new token; ErrDuplicate if the id exists.
	InsertToken(t TokenRecord) error
	// RevokeToken returns ErrNotFound if no such unrevoked token exists.
	RevokeToken(id string, at time.Time) error
	// RevokeCertificate marks the certificate of issuerID with serial revoked
	// at (not zero) with the RFC 5280 reason code and invalidity date (zero:
	// none), as given. ErrNotFound if the issuer has no such certificate;
	// ErrAlreadyRevoked if it is revoked already, whatever the reason, and
	// then nothing changes: revocation is never silently re-dated.
	RevokeCertificate(issuerID, serial string, at time.Time, reason int, invalidity time.Time) error
	// UnholdCertificate releases a certificate revoked with reason
	// certificateHold (6): it is then unrevoked, its revocation time, reason
	// and invalidity date cleared. ErrNotFound if the issuer has no such
	// certificate; ErrNotOnHold if it is not revoked, or revoked for another
	// reason (nothing changes).
	UnholdCertificate(issuerID, serial string) error
	// FinalizeHold turns a certificateHold revocation into a final one with
	// reason (not certificateHold) and invalidity date, keeping its
	// revocation time: the certificate has been out of service since the
	// hold. ErrNotFound if the issuer has no such certificate; ErrNotOnHold
	// if it is not on hold (nothing changes).
	FinalizeHold(issuerID, serial string, reason int, invalidity time.Time) error
	// BlockKey adds a key to the blocklist; ErrDuplicate if it is there.
	BlockKey(k BlockedKey) error
	// CertificatesToBlockWithKey lists the unexpired (not_after after now)
	// certificates whose key hash is spkiHash and that are unrevoked or on
	// hold (certificateHold), oldest first: those a key block revokes.
	CertificatesToBlockWithKey(spkiHash []byte, now time.Time) ([]CertRecord, error)
	// PutOCSPResponses inserts or replaces the pre-signed OCSP responses,
	// keyed by issuer, serial and hash; a stored response with a later
	// ThisUpdate is kept (a slow writer never replaces a newer response).
	// Idempotent.
	PutOCSPResponses(rs []OCSPResponse) error
	// PurgeOCSPResponses deletes the OCSP responses whose NextUpdate is
	// strictly before before and returns how many it deleted.
	PurgeOCSPResponses(before time.Time) (int64, error)
	// PutCRL stores c as the latest CRL of its issuer and shard. c.Number
	// must exceed the stored one's (CRL numbers only grow, RFC 5280 §5.2.3):
	// otherwise ErrDuplicate, and nothing changes.
	PutCRL(c CRLRecord) error
	// PutSetting inserts or replaces the value stored under name (idempotent);
	// a nil value is stored as empty.
	PutSetting(name string, value []byte) error

	// ArchiveCertificates marks up to limit live certificates whose notAfter
	// is before expiredBefore as archived at at, oldest expiry first, and
	// returns how many it marked (fewer than limit: none is left). The rows
	// stay; only the partial indexes of hot paths drop them.
	ArchiveCertificates(expiredBefore, at time.Time, limit int) (int64, error)
	// PurgeExpired deletes up to limit records of the kind what whose time
	// (see Expired) is before before, and returns how many it deleted
	// (fewer than limit: none is left).
	PurgeExpired(what Expired, before time.Time, limit int) (int64, error)
	// RecordExpiryNotice records a delivered expiry notice; recording the
	// same certificate and threshold again changes nothing (idempotent).
	RecordExpiryNotice(n ExpiryNotice) error

	// InsertACMEAccount inserts a new account; ErrDuplicate if the id exists,
	// if the endpoint already has an account with that key thumbprint, or if
	// a non-empty EABKeyID already binds another account.
	InsertACMEAccount(a ACMEAccount) error
	// UpdateACMEAccount sets the status, contacts, terms agreement, key JWK
	// and key thumbprint of the account with a.ID (a key change sets both key
	// fields); the endpoint, EAB key id, requester and creation time never
	// change. ErrNotFound if no account has that id; ErrDuplicate if another
	// account of the endpoint has the new thumbprint (nothing is changed).
	UpdateACMEAccount(a ACMEAccount) error
	// InsertACMEOrder inserts a new order; ErrDuplicate if the id exists. Its
	// AccountID must name an existing account.
	InsertACMEOrder(o ACMEOrder) error
	// TransitionACMEOrder sets the status, authorization ids, certificate
	// serial, error and update time of the order with o.ID (other fields
	// never change), guarded by the version the caller read: only if its
	// status and update time are still from's, in the UPDATE itself, so of
	// two concurrent transitions one wins. ErrStateChanged if the order
	// moved since, ErrNotFound if there is none.
	TransitionACMEOrder(o, from ACMEOrder) error
	// InsertACMEAuthz inserts a new authorization and its challenges, in
	// order; ErrDuplicate if its id or a challenge id exists. Its AccountID
	// must name an existing account; a challenge's AuthzID must be a.ID or "".
	InsertACMEAuthz(a ACMEAuthz) error
	// SetACMEAuthzCAAChecked records at as the time CAA last allowed
	// issuance for the identifier of the authorization with id; ErrNotFound
	// if none.
	SetACMEAuthzCAAChecked(id string, at time.Time) error
	// TransitionACMEAuthz sets the status of the authorization with id and,
	// unless expires is zero, its expiry, guarded by the stored status: only
	// an authorization still in status from changes (from may equal status:
	// setting the same status again succeeds). ErrStateChanged if it is in
	// another, ErrNotFound if there is none.
	TransitionACMEAuthz(id, status string, expires time.Time, from string) error
	// TransitionACMEChallenge sets the status, validation time and error of
	// the challenge with c.ID (its type, token and authorization never
	// change), guarded the same way: ErrStateChanged unless it is in status
	// from, ErrNotFound if there is none.
	TransitionACMEChallenge(c ACMEChallenge, from string) error
	// UseNonce records nonce as spent until expires; ErrDuplicate if it is
	// already recorded. It is the replay record nodes sharing the database
	// consult: callers must still refuse expired nonces themselves, since a
	// record is dropped by PurgeNonces once it expires.
	UseNonce(nonce string, expires time.Time) error
	// PurgeNonces deletes the spent-nonce records that expire strictly before
	// before and returns how many it deleted.
	PurgeNonces(before time.Time) (int64, error)
	// InsertEABKey inserts a new external account binding key; ErrDuplicate
	// if the id exists. Its secret is inserted separately, as a key.
	InsertEABKey(k EABKey) error
	// MarkEABKeyUsed records that the key with id bound an account at at (not
	// zero), so that it binds no other; ErrNotFound if no such key exists or
	// it is revoked, ErrDuplicate if it was already used.
	MarkEABKeyUsed(id string, at time.Time) error

	// InsertManaged inserts a new managed certificate (its Version, Serial,
	// KeyID and RenewDue set); ErrDuplicate if the name exists, deleted or not.
	InsertManaged(m ManagedRecord) error
	// AdvanceManaged makes m.Version (which must be from+1) with its Serial,
	// IssuerID, KeyID, KeyUses and RenewDue the current version of the
	// active managed certificate m.Name, clears LastError and sets
	// LastAttempt; ErrNotFound if the name is not active at version from
	// (another renewal won, or it was deleted), and then nothing changes.
	AdvanceManaged(m ManagedRecord, from int) error
	// ManagedFailed records a failed renewal attempt of name; ErrNotFound if none.
	ManagedFailed(name string, at time.Time, msg string) error
	// DeleteManaged marks the active managed certificate name deleted at at:
	// it is renewed no more. ErrNotFound if no active one has that name.
	DeleteManaged(name string, at time.Time) error
	// ManagedCertRevoked makes the active managed certificate whose current
	// version has serial due for renewal at at, unless it is due earlier,
	// and returns how many it changed (0 or 1).
	ManagedCertRevoked(serial string, at time.Time) (int64, error)
	// ManagedIssuerDue makes every active managed certificate whose current
	// version another issuer than activeIssuer issued due at at, unless it
	// is due earlier, and returns how many it changed.
	ManagedIssuerDue(activeIssuer string, at time.Time) (int64, error)
	// InsertManagedVersion inserts a version; ErrDuplicate if the name has
	// that version or the serial is recorded for another version.
	InsertManagedVersion(v ManagedVersion) error
	// SupersedeManagedVersion marks the current version of name superseded,
	// to be revoked at revokeDue (zero: never); ErrNotFound if that version
	// is not current.
	SupersedeManagedVersion(name string, version int, revokeDue time.Time) error
	// ManagedVersionRevoked clears the pending revocation of a superseded
	// version; ErrNotFound if none is pending.
	ManagedVersionRevoked(name string, version int) error
	// PutManagedKey records that name holds keyID with a certificate valid
	// until notAfter, keeping the latest notAfter (idempotent).
	PutManagedKey(keyID, name string, notAfter time.Time) error
	// ScheduleManagedKeyDestroy sets when keyID is to be destroyed (zero:
	// not, or no more); ErrNotFound if the key is not a managed key.
	ScheduleManagedKeyDestroy(keyID string, at time.Time) error
	// ManagedKeyOf returns the managed key keyID as this transaction sees
	// it; ErrNotFound if none.
	ManagedKeyOf(keyID string) (ManagedKey, error)
}

// Checkpointer signs an audit head; the store calls it after commits so that
// at most Every events go unsigned.
type Checkpointer struct {
	Every int
	Sign  func(head audit.Head) (audit.Checkpoint, error)
	// SignTree, if set, signs a transparency log tree head; SignTreeHead
	// fails without it.
	SignTree func(size uint64, root []byte) (audit.TreeHead, error)
	// Publish, if set, receives the checkpoints and tree heads signed by a
	// transaction once it has committed (never those rolled back), so they
	// can be kept outside the database (a witness). It runs on the writer
	// goroutine and must not block.
	Publish func(cps []audit.Checkpoint, heads []audit.TreeHead)
}
