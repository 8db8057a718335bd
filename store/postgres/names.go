package postgres

import (
	"strings"
)

// namesText is the names column: each name followed by a newline, the
// whole preceded by one, as the SQLite backend stores it.
func namesText(names []string) string {
	return "\n" + strings.Join(names, "\n") + "\n"
}
