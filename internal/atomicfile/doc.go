// Package atomicfile writes a file so that a crash never leaves it half
// written: the content goes to a temporary file beside it, is synced, and
// is renamed into place; the directory is synced after the rename.
//
// It is shared by the CLI (configs, certificates, exports) and the audit
// witness (ca/audit/witness), which both write files a reader must find
// whole or not at all.
//
// Imports: nothing from this module.
package atomicfile
