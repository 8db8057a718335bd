-- Summary rollups (issue 8), as in the SQLite schema: counts per Unix day
-- (UTC, floored) by profile, channel and issuer, and per 32-day span by
-- requester, kept by the triggers below in the inserting statement, so a
-- rolled back insert leaves no count.
CREATE FUNCTION sigil_floor_div(a BIGINT, b BIGINT) RETURNS BIGINT
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN CASE WHEN a >= 0 OR a % b = 0 THEN a / b ELSE a / b - 1 END;

CREATE TABLE certificate_days (
    day       BIGINT NOT NULL,
    profile   TEXT NOT NULL,
    channel   TEXT NOT NULL,
    issuer_id TEXT NOT NULL,
    n         BIGINT NOT NULL,
    PRIMARY KEY (day, profile, channel, issuer_id)
);
CREATE TABLE certificate_requester_spans (
    span      BIGINT NOT NULL,
    requester TEXT NOT NULL,
    n         BIGINT NOT NULL,
    PRIMARY KEY (span, requester)
);

INSERT INTO certificate_days (day, profile, channel, issuer_id, n)
    SELECT sigil_floor_div(created, 86400000000000) AS d, profile, channel, issuer_id, count(*)
    FROM certificates GROUP BY d, profile, channel, issuer_id;
INSERT INTO certificate_requester_spans (span, requester, n)
    SELECT sigil_floor_div(created, 2764800000000000) AS s, requester, count(*)
    FROM certificates GROUP BY s, requester;

CREATE FUNCTION certificate_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        UPDATE certificate_days SET n = n - 1
            WHERE day = sigil_floor_div(OLD.created, 86400000000000)
            AND profile = OLD.profile AND channel = OLD.channel AND issuer_id = OLD.issuer_id;
        UPDATE certificate_requester_spans SET n = n - 1
            WHERE span = sigil_floor_div(OLD.created, 2764800000000000) AND requester = OLD.requester;
        DELETE FROM certificate_days WHERE n = 0 AND day = sigil_floor_div(OLD.created, 86400000000000);
        DELETE FROM certificate_requester_spans WHERE n = 0 AND span = sigil_floor_div(OLD.created, 2764800000000000);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO certificate_days AS d (day, profile, channel, issuer_id, n)
            VALUES (sigil_floor_div(NEW.created, 86400000000000), NEW.profile, NEW.channel, NEW.issuer_id, 1)
            ON CONFLICT (day, profile, channel, issuer_id) DO UPDATE SET n = d.n + 1;
        INSERT INTO certificate_requester_spans AS r (span, requester, n)
            VALUES (sigil_floor_div(NEW.created, 2764800000000000), NEW.requester, 1)
            ON CONFLICT (span, requester) DO UPDATE SET n = r.n + 1;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER certificate_rollup_insert AFTER INSERT ON certificates
    FOR EACH ROW EXECUTE FUNCTION certificate_rollup();
-- Nothing deletes certificates or changes these columns (tidy archives);
-- the triggers keep the counts right if that ever changes.
CREATE TRIGGER certificate_rollup_delete AFTER DELETE ON certificates
    FOR EACH ROW EXECUTE FUNCTION certificate_rollup();
CREATE TRIGGER certificate_rollup_update AFTER UPDATE OF created, profile, requester, channel, issuer_id ON certificates
    FOR EACH ROW EXECUTE FUNCTION certificate_rollup();
