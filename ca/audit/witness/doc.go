// Package witness keeps copies of the audit chain's signed checkpoints and
// the transparency log's signed tree heads outside the database, so that a
// database cut back together with its newest checkpoints is still caught
// (ca/audit, Checkpoints): `sigil serve` publishes every record a commit
// signs, and `sigil audit verify --witness DIR` and serve's start-up check
// read them back.
//
// # Record format
//
// A [Record] is one checkpoint or tree head with every field its signature
// covers, so it verifies with the audit key alone. It is JSON (byte fields
// standard base64, times RFC 3339 with nanoseconds), written as one file per
// record with a trailing newline, named by position ([Record.FileName]:
// checkpoint-%020d.json by sequence number, tree-head-%020d.json by tree
// size) so that a listing sorts in log order and a republished record
// overwrites its copy. The same JSON, without the newline, is the body
// POSTed to a witness URL. The format is fixed: directories written by
// earlier versions must keep verifying (testdata/v1 holds such records).
//
// # Publishing
//
// A [Publisher] writes off the store's writer goroutine, through a bounded
// queue, so a slow disk or URL never holds up a commit; a full queue drops a
// record with an error in the log (the next checkpoint covers the same
// events). Files are written atomically (temporary file, fsync, rename).
//
// Imports: ca/audit (checkpoint and tree head types), internal/atomicfile.
package witness
