-- Summary rollups (issue 8): counting a long range from the certificate
-- indexes reads one entry per certificate; these count per day or span and
-- are kept by the triggers below, in the inserting statement, so a rolled
-- back insert leaves no count. CertificateSummary reads whole days (spans)
-- here and the partial ones at the range's edges from the indexes.
--
-- Requester is not in certificate_days: a requester has few certificates a
-- day, so with it the table has about as many rows as certificates are
-- counted (0.6 rows per certificate on the benchmark's history) and saves
-- nothing. Requesters are counted per 32-day span (epoch-aligned) instead.
--
-- day is the Unix day (UTC, floored); span the Unix day floored to 32 days.
CREATE TABLE certificate_days (
    day       INTEGER NOT NULL,
    profile   TEXT NOT NULL,
    channel   TEXT NOT NULL,
    issuer_id TEXT NOT NULL,
    n         INTEGER NOT NULL,
    PRIMARY KEY (day, profile, channel, issuer_id)
) WITHOUT ROWID;
CREATE TABLE certificate_requester_spans (
    span      INTEGER NOT NULL,
    requester TEXT NOT NULL,
    n         INTEGER NOT NULL,
    PRIMARY KEY (span, requester)
) WITHOUT ROWID;

INSERT INTO certificate_days (day, profile, channel, issuer_id, n)
    SELECT created / 86400000000000 - (created < 0 AND created % 86400000000000 != 0) AS d,
        profile, channel, issuer_id, count(*)
    FROM certificates GROUP BY d, profile, channel, issuer_id;
INSERT INTO certificate_requester_spans (span, requester, n)
    SELECT created / 2764800000000000 - (created < 0 AND created % 2764800000000000 != 0) AS s,
        requester, count(*)
    FROM certificates GROUP BY s, requester;

CREATE TRIGGER certificate_rollup_insert AFTER INSERT ON certificates BEGIN
    INSERT INTO certificate_days (day, profile, channel, issuer_id, n) VALUES (
        NEW.created / 86400000000000 - (NEW.created < 0 AND NEW.created % 86400000000000 != 0),
        NEW.profile, NEW.channel, NEW.issuer_id, 1)
        ON CONFLICT (day, profile, channel, issuer_id) DO UPDATE SET n = n + 1;
    INSERT INTO certificate_requester_spans (span, requester, n) VALUES (
        NEW.created / 2764800000000000 - (NEW.created < 0 AND NEW.created % 2764800000000000 != 0),
        NEW.requester, 1)
        ON CONFLICT (span, requester) DO UPDATE SET n = n + 1;
END;

-- Nothing deletes certificates or changes these columns (tidy archives);
-- the triggers below keep the counts right if that ever changes, at no
-- cost to issuance.
CREATE TRIGGER certificate_rollup_delete AFTER DELETE ON certificates BEGIN
    UPDATE certificate_days SET n = n - 1
        WHERE day = OLD.created / 86400000000000 - (OLD.created < 0 AND OLD.created % 86400000000000 != 0)
        AND profile = OLD.profile AND channel = OLD.channel AND issuer_id = OLD.issuer_id;
    UPDATE certificate_requester_spans SET n = n - 1
        WHERE span = OLD.created / 2764800000000000 - (OLD.created < 0 AND OLD.created % 2764800000000000 != 0)
        AND requester = OLD.requester;
    DELETE FROM certificate_days WHERE n = 0
        AND day = OLD.created / 86400000000000 - (OLD.created < 0 AND OLD.created % 86400000000000 != 0);
    DELETE FROM certificate_requester_spans WHERE n = 0
        AND span = OLD.created / 2764800000000000 - (OLD.created < 0 AND OLD.created % 2764800000000000 != 0);
END;
CREATE TRIGGER certificate_rollup_update AFTER UPDATE OF created, profile, requester, channel, issuer_id ON certificates BEGIN
    UPDATE certificate_days SET n = n - 1
        WHERE day = OLD.created / 86400000000000 - (OLD.created < 0 AND OLD.created % 86400000000000 != 0)
        AND profile = OLD.profile AND channel = OLD.channel AND issuer_id = OLD.issuer_id;
    UPDATE certificate_requester_spans SET n = n - 1
        WHERE span = OLD.created / 2764800000000000 - (OLD.created < 0 AND OLD.created % 2764800000000000 != 0)
        AND requester = OLD.requester;
    DELETE FROM certificate_days WHERE n = 0
        AND day = OLD.created / 86400000000000 - (OLD.created < 0 AND OLD.created % 86400000000000 != 0);
    DELETE FROM certificate_requester_spans WHERE n = 0
        AND span = OLD.created / 2764800000000000 - (OLD.created < 0 AND OLD.created % 2764800000000000 != 0);
    INSERT INTO certificate_days (day, profile, channel, issuer_id, n) VALUES (
        NEW.created / 86400000000000 - (NEW.created < 0 AND NEW.created % 86400000000000 != 0),
        NEW.profile, NEW.channel, NEW.issuer_id, 1)
        ON CONFLICT (day, profile, channel, issuer_id) DO UPDATE SET n = n + 1;
    INSERT INTO certificate_requester_spans (span, requester, n) VALUES (
        NEW.created / 2764800000000000 - (NEW.created < 0 AND NEW.created % 2764800000000000 != 0),
        NEW.requester, 1)
        ON CONFLICT (span, requester) DO UPDATE SET n = n + 1;
END;
