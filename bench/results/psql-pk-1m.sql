SET maintenance_work_mem = '1GB';
CREATE TABLE coins (id text, symbol text, name text, cmc_id bigint);
CREATE TABLE rankings (coin_id text NOT NULL, ts timestamptz NOT NULL, rank int NOT NULL, volume_24h_usd float8, source text NOT NULL DEFAULT 'rankings');
CREATE TABLE market (coin_id text NOT NULL, ts timestamptz NOT NULL, price_usd float8 NOT NULL, market_cap_usd float8, volume_24h_usd float8, rank int, rank_source text);
\copy coins (id, symbol, name, cmc_id) FROM '/tmp/coinflow-bench/data-1m/coins.csv' WITH (FORMAT csv, HEADER true)
\copy rankings (coin_id, ts, rank, volume_24h_usd) FROM '/tmp/coinflow-bench/data-1m/rankings.csv' WITH (FORMAT csv, HEADER true)
\copy market (coin_id, ts, price_usd, market_cap_usd, volume_24h_usd) FROM '/tmp/coinflow-bench/data-1m/markets.csv' WITH (FORMAT csv, HEADER true)
ALTER TABLE coins ADD PRIMARY KEY (id);
ALTER TABLE rankings ADD PRIMARY KEY (coin_id, ts);
ALTER TABLE market ADD PRIMARY KEY (coin_id, ts);
