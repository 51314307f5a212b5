SET work_mem = '256MB';
SET maintenance_work_mem = '1GB';
\i /work/main/migrations/2026-11-24-000001_warehouse/up.sql
\i /work/main/migrations/2026-11-24-000002_api/up.sql
\i /work/main/migrations/2026-12-06-000010_row_accounting/up.sql
\i /work/main/migrations/2026-12-06-000020_top_slots/up.sql
\i /work/main/migrations/2026-12-06-000030_candle_interval/up.sql
\i /work/main/migrations/2026-12-06-000040_rankings_source/up.sql
\i /work/main/migrations/2026-12-06-000050_file_stat/up.sql
\i /work/main/bench/sql/endstate-prepare.sql
SELECT bench_drop(t) FROM unnest(ARRAY['market', 'rankings', 'daily', 'top_slots']) AS t;
\copy coins (id, symbol, name, cmc_id) FROM '/tmp/coinflow-bench/data-1m/coins.csv' WITH (FORMAT csv, HEADER true)
\copy rankings (coin_id, ts, rank, volume_24h_usd) FROM '/tmp/coinflow-bench/data-1m/rankings.csv' WITH (FORMAT csv, HEADER true)
\copy market_csv (coin_id, ts, price_usd, market_cap_usd, volume_24h_usd) FROM '/tmp/coinflow-bench/data-1m/markets.csv' WITH (FORMAT csv, HEADER true)
\i /work/main/bench/sql/endstate-finish.sql
