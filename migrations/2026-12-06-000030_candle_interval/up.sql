-- Candles get an interval and are keyed by (coin, interval, start of the period in UTC):
-- the same day exported as `2016-01-01 23:59:59` and, resaved by Excel, as
-- `01/01/16 23:59` is one candle, and hourly exchange candles live beside daily ones.
--
-- The intervals: 1m, 5m, 15m, 30m, 1h, 4h, 1d. A period starts at a multiple of its
-- length since 1970-01-01T00:00Z (days at 00:00 UTC, 4h periods at 00, 04, … UTC); a
-- candle belongs to the period its stamp lies in, so a close stamp (23:59:59, 23:59)
-- floors to that day's 00:00 and a stamp exactly on a boundary (00:00:00) opens the
-- period it starts. `ts` keeps the stamp as the export gave it.
--
-- This migration runs outside a single transaction (metadata.toml): each step below
-- commits before the next, so the one brief ACCESS EXCLUSIVE lock a catalog change
-- needs is never held through a long step. Every step can be run again.

-- Step 1 (ACCESS EXCLUSIVE on candles, instant: a constant default and a nullable
-- column are catalog changes, no row is rewritten).
BEGIN;
ALTER TABLE candles ADD COLUMN IF NOT EXISTS interval text NOT NULL DEFAULT '1d';
ALTER TABLE candles ADD COLUMN IF NOT EXISTS period_start timestamptz;

-- The length of an interval (NULL for a name that is not one).
CREATE OR REPLACE FUNCTION candle_interval_length(name text) RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
SELECT CASE name
    WHEN '1m' THEN interval '1 minute'
    WHEN '5m' THEN interval '5 minutes'
    WHEN '15m' THEN interval '15 minutes'
    WHEN '30m' THEN interval '30 minutes'
    WHEN '1h' THEN interval '1 hour'
    WHEN '4h' THEN interval '4 hours'
    WHEN '1d' THEN interval '1 day'
END
$$;

-- The start of the period of `interval` that `ts` lies in.
CREATE OR REPLACE FUNCTION candle_period_start(ts timestamptz, name text) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
SELECT date_bin(candle_interval_length(name), ts, timestamptz '1970-01-01T00:00:00Z')
$$;

-- The interval of one coin's candles from the spacing of their stamps: each gap between
-- consecutive distinct stamps fits the interval it is within 2 % of (1d ± 28 min, so a
-- close stamp with its seconds cut still fits; 1h ± 72 s), or none; the most common fit
-- wins, ties going to the shorter interval and a fit to the gaps that fit none. NULL
-- when most gaps fit none (irregular spacing); '1d' when there is no gap to measure (a
-- single stamp).
CREATE OR REPLACE FUNCTION candle_spacing(stamps timestamptz[]) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
WITH intervals (name, seconds) AS (
    VALUES ('1m', 60), ('5m', 300), ('15m', 900), ('30m', 1800), ('1h', 3600),
           ('4h', 14400), ('1d', 86400)
),
distinct_stamps AS (
    SELECT DISTINCT s FROM unnest(stamps) AS u(s)
),
gaps AS (
    SELECT extract(epoch FROM s - lag(s) OVER (ORDER BY s)) AS gap FROM distinct_stamps
),
fits AS (
    SELECT (SELECT i.name FROM intervals i WHERE abs(g.gap - i.seconds) <= 0.02 * i.seconds) AS name
    FROM gaps g
    WHERE g.gap IS NOT NULL
)
SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM fits) THEN '1d' ELSE (
    SELECT f.name
    FROM fits f LEFT JOIN intervals i ON i.name = f.name
    GROUP BY f.name, i.seconds
    ORDER BY count(*) DESC, f.name IS NULL, i.seconds
    LIMIT 1
) END
$$;
COMMIT;

-- Step 2 (ROW EXCLUSIVE on candles, daily and top_slots: ordinary row writes, readers
-- go on reading; a SHARE lock on candles while its new key index is built, which
-- readers do not conflict with either). Rows of the previous release had no interval:
-- each coin's stored candles take the one its spacing gives (the rule above; in practice
-- daily; '1d' where the spacing is irregular). Candles that now share a key (the twins
-- this change is about) keep the latest stamp, the one /top already served.
BEGIN;
CREATE TEMP TABLE upgraded_coins ON COMMIT DROP AS
SELECT coin_id, coalesce(candle_spacing(array_agg(ts)), '1d') AS interval
FROM candles
WHERE period_start IS NULL
GROUP BY coin_id;

UPDATE candles k
SET interval = u.interval, period_start = candle_period_start(k.ts, u.interval)
FROM upgraded_coins u
WHERE k.coin_id = u.coin_id AND k.period_start IS NULL;

CREATE TEMP TABLE twin_coins ON COMMIT DROP AS
WITH gone AS (
    DELETE FROM candles k
    USING candles later
    WHERE later.coin_id = k.coin_id AND later.interval = k.interval
      AND later.period_start = k.period_start AND later.ts > k.ts
    RETURNING k.coin_id
)
SELECT DISTINCT coin_id FROM gone;

CREATE UNIQUE INDEX IF NOT EXISTS candles_period_key ON candles (coin_id, interval, period_start);

-- daily from candles, by the ETL's rule (1d candles where a coin-day has one, else the
-- coarsest finer interval folded), for the coins whose days this upgrade changed: those
-- that lost twins and those whose candles are finer than a day.
CREATE TEMP TABLE redo_coins ON COMMIT DROP AS
SELECT coin_id FROM twin_coins
UNION
SELECT coin_id FROM upgraded_coins WHERE interval <> '1d';

WITH k AS (
    SELECT c.*, (c.period_start AT TIME ZONE 'UTC')::date AS day,
           candle_interval_length(c.interval) AS len
    FROM candles c JOIN redo_coins r ON r.coin_id = c.coin_id
),
picked AS (
    SELECT k.* FROM k
    WHERE k.len = (SELECT max(o.len) FROM k o WHERE o.coin_id = k.coin_id AND o.day = k.day)
),
folded AS (
    SELECT coin_id, day,
           (array_agg(open ORDER BY period_start))[1] AS open,
           max(high) AS high, min(low) AS low,
           (array_agg(close ORDER BY period_start DESC))[1] AS close,
           avg(close) AS avg_price, max(market_cap_usd) AS max_market_cap_usd,
           sum(volume_usd) AS last_volume_usd, count(*)::integer AS samples
    FROM picked
    GROUP BY coin_id, day
),
changed AS (
    UPDATE daily d
    SET open = f.open, high = f.high, low = f.low, close = f.close, avg_price = f.avg_price,
        max_market_cap_usd = f.max_market_cap_usd, last_volume_usd = f.last_volume_usd,
        samples = f.samples
    FROM folded f
    WHERE d.coin_id = f.coin_id AND d.day = f.day AND d.source = 'candles'
      AND (d.open, d.high, d.low, d.close, d.avg_price, d.max_market_cap_usd, d.last_volume_usd, d.samples)
          IS DISTINCT FROM
          (f.open, f.high, f.low, f.close, f.avg_price, f.max_market_cap_usd, f.last_volume_usd, f.samples)
    RETURNING 1
)
UPDATE data_versions SET version = version + 1, updated_at = now()
WHERE dataset = 'daily' AND EXISTS (SELECT 1 FROM changed);

-- /top takes 1d candles only (a candle counts from the end of its day). What this
-- function gives for the upgraded rows is what was stored, except for coins whose
-- candles are finer than a day: their candle slots are dropped below (their market
-- slots do not depend on candles).
CREATE OR REPLACE FUNCTION top_slots_of(coins text[], since timestamptz[])
RETURNS TABLE (
    bucket integer, coin_id text, valid_from timestamptz, valid_to timestamptz,
    price_usd float8, market_cap_usd float8, volume_24h_usd float8, rank integer,
    rank_source text
)
LANGUAGE sql STABLE
-- The planner's row estimates for unnest and generate_series are far too high here; JIT
-- compilation triggered by them costs more than the whole statement.
SET jit = off
AS $$
WITH wanted AS (
    SELECT w.coin_id, w.since FROM unnest(coins, since) AS w(coin_id, since)
),
snap AS (
    SELECT m.coin_id, m.ts AS valid_from,
           least(lead(m.ts) OVER (PARTITION BY m.coin_id ORDER BY m.ts),
                 m.ts + interval '24:00:00.000001') AS valid_to,
           m.price_usd, m.market_cap_usd, m.volume_24h_usd, m.rank,
           CASE WHEN m.rank IS NULL THEN 'market' ELSE coalesce(m.rank_source, 'market') END AS rank_source
    FROM wanted w
    JOIN market m ON m.coin_id = w.coin_id AND m.ts >= w.since - interval '3 days'
),
covered AS (
    SELECT s.coin_id, range_agg(tstzrange(s.valid_from, s.valid_to)) AS cover
    FROM snap s
    GROUP BY s.coin_id
),
ended AS (
    -- A daily candle (one per coin and day: the key) counts from the end of its day.
    SELECT k.coin_id, k.period_start + interval '1 day' AS ended, k.close, k.market_cap_usd, k.volume_usd
    FROM wanted w
    JOIN candles k ON k.coin_id = w.coin_id AND k.interval = '1d'
                  AND k.period_start >= w.since - interval '4 days'
),
candle AS (
    SELECT e.coin_id, e.close, e.market_cap_usd, e.volume_usd,
           tstzrange(e.ended, least(lead(e.ended) OVER (PARTITION BY e.coin_id ORDER BY e.ended),
                                    e.ended + interval '24:00:00.000001')) AS valid
    FROM ended e
),
candle_piece AS (
    SELECT k.coin_id, lower(p.piece) AS valid_from, upper(p.piece) AS valid_to,
           k.close AS price_usd, k.market_cap_usd, k.volume_usd AS volume_24h_usd,
           NULL::integer AS rank, 'candles' AS rank_source
    FROM candle k
    LEFT JOIN covered v ON v.coin_id = k.coin_id
    CROSS JOIN LATERAL unnest(
        tstzmultirange(k.valid) - coalesce(v.cover, '{}'::tstzmultirange)
    ) AS p(piece)
),
slot AS (
    SELECT s.coin_id, s.valid_from, s.valid_to, s.price_usd, s.market_cap_usd,
           s.volume_24h_usd, s.rank, s.rank_source
    FROM snap s
    UNION ALL
    SELECT * FROM candle_piece
)
SELECT b.bucket, s.coin_id, s.valid_from, s.valid_to, s.price_usd, s.market_cap_usd,
       s.volume_24h_usd, s.rank, s.rank_source
FROM slot s
JOIN wanted w ON w.coin_id = s.coin_id AND s.valid_from >= w.since
CROSS JOIN LATERAL generate_series(
    floor(extract(epoch FROM s.valid_from) / 3600)::integer,
    floor((extract(epoch FROM s.valid_to) - 0.000001) / 3600)::integer
) AS b(bucket)
$$;

WITH gone AS (
    DELETE FROM top_slots t USING upgraded_coins u
    WHERE t.coin_id = u.coin_id AND u.interval <> '1d' AND t.rank_source = 'candles'
    RETURNING 1
)
UPDATE data_versions SET version = version + 1, updated_at = now()
WHERE dataset = 'top' AND EXISTS (SELECT 1 FROM gone);
COMMIT;

-- Step 3: the column is filled; NOT NULL without a scan under an exclusive lock. A
-- NOT VALID check is a catalog change (ACCESS EXCLUSIVE, instant); validating it scans
-- under SHARE UPDATE EXCLUSIVE (readers and row writers go on); SET NOT NULL then uses
-- the valid check instead of scanning (ACCESS EXCLUSIVE, instant).
BEGIN;
ALTER TABLE candles DROP CONSTRAINT IF EXISTS candles_period_start_set;
ALTER TABLE candles ADD CONSTRAINT candles_period_start_set CHECK (period_start IS NOT NULL) NOT VALID;
COMMIT;
ALTER TABLE candles VALIDATE CONSTRAINT candles_period_start_set;
BEGIN;
ALTER TABLE candles ALTER COLUMN period_start SET NOT NULL;
ALTER TABLE candles DROP CONSTRAINT candles_period_start_set;
-- Only the intervals named above (NOT VALID: instant; every stored row was set above by
-- candle_spacing, which names only these, and is checked by the VALIDATE below).
ALTER TABLE candles ADD CONSTRAINT candles_interval_known
    CHECK (candle_interval_length(interval) IS NOT NULL) NOT VALID;
COMMIT;
ALTER TABLE candles VALIDATE CONSTRAINT candles_interval_known;

-- Step 4 (ACCESS EXCLUSIVE on candles, instant): the key built in step 2 becomes the
-- primary key; the old key (coin, ts) goes, and with it its index.
BEGIN;
ALTER TABLE candles DROP CONSTRAINT candles_pkey;
ALTER TABLE candles ADD CONSTRAINT candles_pkey PRIMARY KEY USING INDEX candles_period_key;
COMMIT;
ANALYZE candles;
