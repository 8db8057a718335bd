package api

import (
	"github.com/sigil-ca/sigil/api/wire"
	"github.com/sigil-ca/sigil/ca"
)

// status maps every ca.Kind to an HTTP status (wire.Status, shared with the
// auditor page); TestStatusTable covers each.
func status(k ca.Kind) int { return wire.Status(k) }
