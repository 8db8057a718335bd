-- An EAB key's HMAC secret is kept in the keys table (envelope-encrypted,
-- re-wrapped with the KEK, under the EAB key's id), never in plaintext here.
ALTER TABLE acme_eab_keys DROP COLUMN hmac_key;

-- RFC 9773 §5: a certificate ordered with "replaces" names the serial of the
-- one it replaces, so the record links renewals together.
ALTER TABLE certificates ADD COLUMN replaces TEXT NOT NULL DEFAULT '';
CREATE INDEX certificates_replaces ON certificates (replaces) WHERE replaces != '';
