-- The psql and pgloader baselines that reach the coinflow-etl end state, step 2 of 2: after
-- coins.csv went into coins, rankings.csv into rankings (source rankings) and
-- markets.csv into market_csv, builds in SQL what a first coinflow-etl run of the same
-- files leaves: market with each snapshot rank as-of joined from rankings, daily,
-- top_slots, then every key, index and foreign key the migrations define, the data
-- versions and fresh planner statistics. Plain SQL, run by pgloader too: its SQL file
-- reader takes a quote or a semicolon in a comment for code, so comments hold neither.
SET work_mem = '256MB';
SET maintenance_work_mem = '1GB';

-- The probe below walks the rankings primary key (coin_id, ts).
SELECT bench_rebuild('rankings');

-- The as-of join (etl/src/transform.rs market_ranks): the latest ranking of the coin at
-- or before the snapshot, at most 60 s older (the coinflow-etl default --rank-tolerance),
-- rank_source is the source of that ranking, NULL when none matched.
INSERT INTO market (coin_id, ts, price_usd, market_cap_usd, volume_24h_usd, rank, rank_source)
SELECT s.coin_id, s.ts, s.price_usd, s.market_cap_usd, s.volume_24h_usd, r.rank, r.source
FROM market_csv s
LEFT JOIN LATERAL (
    SELECT k.rank, k.source
    FROM rankings k
    WHERE k.coin_id = s.coin_id AND k.ts <= s.ts AND k.ts >= s.ts - interval '60 seconds'
    ORDER BY k.ts DESC
    LIMIT 1
) r ON true;
DROP TABLE market_csv;
SELECT bench_rebuild('market');

-- daily (etl/src/transform.rs daily): per coin and UTC day of the snapshots, the first,
-- highest, lowest and last price, the mean price, the largest cap, the last snapshot
-- volume and the number of snapshots, no candles file, so the source of every row is market.
INSERT INTO daily (coin_id, day, open, high, low, close, avg_price, max_market_cap_usd,
                   last_volume_usd, samples, source)
SELECT coin_id, (ts AT TIME ZONE 'UTC')::date,
       (array_agg(price_usd ORDER BY ts))[1], max(price_usd), min(price_usd),
       (array_agg(price_usd ORDER BY ts DESC))[1], avg(price_usd), max(market_cap_usd),
       (array_agg(volume_24h_usd ORDER BY ts DESC))[1], count(*), 'market'
FROM market
GROUP BY coin_id, (ts AT TIME ZONE 'UTC')::date;
SELECT bench_rebuild('daily');

-- top_slots, through the migrations own definition (top_slots_of), for every coin.
INSERT INTO top_slots
SELECT * FROM top_slots_of(ARRAY(SELECT id FROM coins ORDER BY id),
                           array_fill('-infinity'::timestamptz, ARRAY[(SELECT count(*)::int FROM coins)]));
SELECT bench_rebuild('top_slots');

-- Foreign keys last: each is one validating join, not a check per row.
SELECT bench_rebuild(t, 'f') FROM unnest(ARRAY['market', 'rankings', 'daily', 'top_slots']) AS t;
ALTER TABLE rankings ALTER COLUMN source DROP DEFAULT;

UPDATE data_versions SET version = version + 1, updated_at = now()
WHERE dataset IN ('coins', 'market', 'daily', 'top');
DROP FUNCTION bench_drop(text, text);
DROP FUNCTION bench_rebuild(text, text);
DROP TABLE bench_ddl;
ANALYZE coins;
ANALYZE rankings;
ANALYZE market;
ANALYZE daily;
ANALYZE top_slots;
