// Package storetest is the contract every store.Store backend keeps, as a
// test suite: a backend's own tests call Run with a function that opens a
// fresh, empty store of that backend, and the suite checks, through the
// store.Store and store.Tx interfaces alone, what the rest of Sigil relies
// on — certificates and serial uniqueness per issuer, the audit chain and
// its checkpoints, the transparency log and its proofs, keys and tokens,
// ACME records and their guarded transitions (store.ErrStateChanged), spent
// nonces, job runs, managed certificates, revocation records, tidy, history
// search, and that a store refuses to open without a clock.
//
// What only one backend has (SQLite's query plans, migrations, group
// commit) is tested beside that backend, not here. Every clock is fake:
// records are stamped from a fixed start, never from the wall clock.
//
// Imports: store, ca/audit and internal/testclock from this module (and
// clockwork for fake clocks, transparency-dev/merkle to check proofs
// independently of the store); only tests import it.
package storetest
