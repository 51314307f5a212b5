-- /top at any instant in O(limit) rows.
--
-- A coin's row counts at instant T when it is the coin's latest market row at or before T
-- and at most 24 hours old: a market row at ts is valid over [ts, least(next ts,
-- ts + 24 h + 1 µs)). For a coin with no valid market row, its latest daily candle whose
-- day has ENDED by T (no look-ahead) and which ended at most 24 hours before T counts:
-- valid over [end, least(next end, end + 24 h + 1 µs)) minus the coin's market validity.
-- Each validity interval is stored once per hour bucket it overlaps (hourly snapshots: one
-- bucket each), so the coins valid at T are all in T's bucket, and the index below walks
-- them in rank order: a request reads about `limit` index entries, never every coin.
--
-- The ETL keeps this table in step with market and candles (per affected coin, writing
-- only rows that differ) through top_slots_of(), the one definition of the validity
-- rules; the backfill below uses it too.
CREATE TABLE top_slots (
    -- Hours since 1970-01-01T00:00Z of the bucket this copy of the interval lies in.
    bucket          integer NOT NULL,
    coin_id         text NOT NULL,
    valid_from      timestamptz NOT NULL,
    -- Exclusive.
    valid_to        timestamptz NOT NULL,
    price_usd       float8 NOT NULL,
    market_cap_usd  float8,
    volume_24h_usd  float8,
    rank            integer,
    -- The ranking source of a ranked snapshot (e.g. 'cmc'), 'market' for an unranked
    -- snapshot, 'candles' for a daily candle's close.
    rank_source     text NOT NULL,
    PRIMARY KEY (coin_id, valid_from, bucket)
);
CREATE INDEX top_slots_rank_idx ON top_slots (
    bucket, rank ASC NULLS LAST, market_cap_usd DESC NULLS LAST, volume_24h_usd DESC NULLS LAST, coin_id
) INCLUDE (valid_from, valid_to, price_usd, rank_source);

-- The slots of `coins[i]` that start at or after `since[i]` (`-infinity`: all of them),
-- from their market rows and daily candles. A slot starting at or after `since` depends
-- only on rows less than three days older (validity never exceeds 24 h + 1 µs), so a run
-- that changed a coin's rows from t on recomputes from t - 2 days on, not its history.
CREATE FUNCTION top_slots_of(coins text[], since timestamptz[])
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
    -- One candle per coin and day end: the latest of a day's twins.
    SELECT DISTINCT ON (c.coin_id, c.ended) c.coin_id, c.ended, c.close, c.market_cap_usd, c.volume_usd
    FROM (
        SELECT k.coin_id, k.ts, k.close, k.market_cap_usd, k.volume_usd,
               (date_trunc('day', k.ts AT TIME ZONE 'UTC') + interval '24:00:00') AT TIME ZONE 'UTC' AS ended
        FROM wanted w
        JOIN candles k ON k.coin_id = w.coin_id AND k.ts >= w.since - interval '4 days'
    ) c
    ORDER BY c.coin_id, c.ended, c.ts DESC
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

-- Backfill from the rows already stored, a batch of coins at a time. Only the new table
-- is written: market and candles are read under their ordinary read lock, so readers and
-- writers of the warehouse are not held up.
DO $$
DECLARE
    batch text[];
BEGIN
    FOR batch IN
        SELECT array_agg(id ORDER BY id)
        FROM (SELECT id, (row_number() OVER (ORDER BY id) - 1) / 500 AS n FROM coins) c
        GROUP BY n
    LOOP
        INSERT INTO top_slots
        SELECT * FROM top_slots_of(batch, array_fill('-infinity'::timestamptz, ARRAY[cardinality(batch)]));
    END LOOP;
END
$$;
ANALYZE top_slots;

-- The version the API's /top cache follows; the ETL bumps it when it changed top_slots.
INSERT INTO data_versions (dataset) VALUES ('top');
