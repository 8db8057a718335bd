package postgres

// SetNoRollup makes s count every summary from the certificate table
// (true) or from the rollups where they answer (false, the default).
func SetNoRollup(s *Store, v bool) { s.noRollup = v }
