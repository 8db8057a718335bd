// Package testclock gives every test the same way to start a fake clock, and
// one switch to run the whole suite as if on another day.
//
// A test must not depend on the day it runs: each component under test takes
// a clock, and tests hand them all one fake clock started here. Setting
// SIGIL_TEST_CLOCK_SHIFT to a Go duration (for example 8760h, a year) moves
// every start by that much, so `SIGIL_TEST_CLOCK_SHIFT=8760h go test ./...`
// finds a test that mixes the fake clock with the wall clock, or a fixture
// whose validity ends.
package testclock

import (
	"fmt"
	"os"
	"time"

	"github.com/jonboulle/clockwork"
)

// ShiftEnv names the variable that moves every start.
const ShiftEnv = "SIGIL_TEST_CLOCK_SHIFT"

// Default is the start tests use unless they need a particular instant.
var Default = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

// Shift is the duration ShiftEnv asks for; it panics on a malformed value
// so that a mistyped run fails loudly instead of running unshifted.
func Shift() time.Duration {
	v := os.Getenv(ShiftEnv)
	if v == "" {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		panic(fmt.Sprintf("%s=%q: %v", ShiftEnv, v, err))
	}
	return d
}

// At returns t moved by Shift: the instant a test written for t starts at.
func At(t time.Time) time.Time { return t.Add(Shift()) }

// Start is At(Default).
func Start() time.Time { return At(Default) }

// New returns a fake clock at Start.
func New() *clockwork.FakeClock { return clockwork.NewFakeClockAt(Start()) }

// NewAt returns a fake clock at At(t).
func NewAt(t time.Time) *clockwork.FakeClock { return clockwork.NewFakeClockAt(At(t)) }
