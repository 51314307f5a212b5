-- Back to candles keyed by (coin, ts). Rows of one coin and stamp under two intervals
-- keep the coarsest; the interval and period start go.
DELETE FROM candles k
USING candles o
WHERE o.coin_id = k.coin_id AND o.ts = k.ts
  AND candle_interval_length(o.interval) > candle_interval_length(k.interval);
ALTER TABLE candles DROP CONSTRAINT candles_pkey;
ALTER TABLE candles ADD PRIMARY KEY (coin_id, ts);
ALTER TABLE candles DROP CONSTRAINT IF EXISTS candles_interval_known;
ALTER TABLE candles DROP COLUMN period_start;
ALTER TABLE candles DROP COLUMN interval;
DROP FUNCTION candle_spacing(timestamptz[]);
DROP FUNCTION candle_period_start(timestamptz, text);
DROP FUNCTION candle_interval_length(text);
-- top_slots_of as the previous release defined it.
DROP FUNCTION top_slots_of(text[], timestamptz[]);
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
