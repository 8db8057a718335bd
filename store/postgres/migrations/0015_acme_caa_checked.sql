-- When CAA was last checked for an authorization's identifier (Unix
-- nanoseconds; 0: never, as for every authorization made before this
-- column). Issuance from an authorization whose check is older than the
-- CA/Browser Forum's 8 hours checks CAA again.
ALTER TABLE acme_authzs ADD COLUMN caa_checked BIGINT NOT NULL DEFAULT 0;
