// Package audit is Sigil's tamper-evident audit chain: the canonical encoding
// of an audit event, the hash that links each event to the one before it,
// signed checkpoints of the chain head, and offline verification of a whole
// log.
//
// The package imports nothing of ours, only the standard library, so that
// store can compute and append an event inside the same transaction that
// makes the audited change visible (DESIGN.md, Records). It holds no state of
// its own and never reads the clock: times come from callers.
//
// # Hashing rule
//
// Events are numbered from 1 with no gaps. Each event stores
//
//	Hash = SHA-256(PrevHash ‖ Canonical(event))
//
// where PrevHash is the Hash of the previous event, or 32 zero bytes
// (GenesisHash) for event 1. Canonical is a versioned, length-prefixed binary
// encoding of Seq, Time, Actor, Action, Target and Detail, so no two different
// events share an encoding. Altering, deleting, inserting or reordering an
// event breaks the chain at that event; [Next] is the only way to extend it.
//
// # Actions
//
// Every event's Action is one of the constants of actions.go, each
// documented with when it is written; [Actions] lists them for the docs
// (docs/audit-actions.md is generated from it) and a test checks that no
// source of the module appends or filters by an action that is not one of
// them.
//
// # Checkpoints
//
// A hash chain alone cannot show that its newest rows were cut off, nor that
// the whole chain was recomputed after an edit. A [Checkpoint] is a signed
// statement "the chain had Seq events and event Seq had this Hash", made with a
// key the rewriter does not hold and kept where the log is kept (or exported
// with it). [Verifier] checks every event against its predecessor and every
// checkpoint against the event it names: an event whose hash differs from a
// checkpoint means the chain was rewritten, and a checkpoint past the end of
// the log means events were truncated. Events after the newest checkpoint are
// protected only by the chain itself, so callers should checkpoint regularly.
// A database cut back together with its newest checkpoints is consistent on
// its own; checkpoints published elsewhere (a witness: ca/audit/witness) and
// given to the [Verifier] with the stored ones catch that cut too.
//
// # Export
//
// [ExportWriter] writes a range of the chain as NDJSON that verifies offline
// with nothing but the root: a header carrying the checkpoint signers'
// certificate chains, one line per event with every field its hash covers,
// each checkpoint right after the event it signs, and an end line with
// counts. [VerifyExport] checks such a file in one streaming pass and names
// the line and event where it breaks. An export that starts after event 1
// takes its first PrevHash on trust; the checkpoints after it vouch for it,
// which is why the last exported event must be covered by one.
//
// # Transparency log
//
// The package also holds the primitives of the transparency log of issued
// certificates, so that store can append a leaf in the transaction that
// records a certificate: the leaf encoding [LogLeaf] (versioned, length
// prefixed: issuance time and certificate DER), RFC 9162 §2.1.1 hashing
// ([LeafHash], [NodeHash], [EmptyRoot]) and [TreeHead], a signed statement
// of the tree's size and root made by the same audit key as checkpoints,
// under its own domain string so neither signature can pass for the other.
// Proofs are built where the tree is stored (store) and checked in one place,
// ca (VerifySignedTreeHead, VerifyInclusion, VerifyConsistency), with
// github.com/transparency-dev/merkle.
package audit
