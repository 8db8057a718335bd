package postgres

import (
	"strings"

	"github.com/sigil-ca/sigil/store"
)

// qInsertCertName indexes one name of a certificate; see
// migrations/0013_history.sql.
const qInsertCertName = "INSERT INTO certificate_names (rname, cert_id) VALUES (?, ?) ON CONFLICT DO NOTHING"

// namesText is the names column: each name followed by a newline, the
// whole preceded by one, as the SQLite backend stores it.
func namesText(names []string) string {
	return "\n" + strings.Join(names, "\n") + "\n"
}

// insertNames indexes the names of certificate id in the current savepoint.
// The substring index (pg_trgm) is on certificates.names itself.
func (t *pgTx) insertNames(id int64, names []string) error {
	for _, n := range names {
		if _, err := t.exec("index certificate name", qInsertCertName, store.ReverseName(n), id); err != nil {
			return err
		}
	}
	return nil
}
