-- GET /read/next-chunk (market, no filter): the statements coinflow-api runs per request,
-- as captured from the server log (bench/results/api-statements.log). The API binds
-- them as unnamed extended-protocol statements; run with -M prepared.
-- pgbench reads :MI and :SS as variables, so the to_char format is spelled with || (folded
-- to the same constant at plan time).
-- Variables: k1 (coin id), k2 (timestamp) = the cursor's key, size, lim = size + 1.
SELECT 1;
BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY;
SELECT version FROM data_versions WHERE dataset = 'market';
SELECT w.k1, w.k2, w.k3, w.i FROM (SELECT t.coin_id AS k1, to_char(t.ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24' || ':' || 'MI' || ':' || 'SS.US"Z"') AS k2, NULL::text AS k3, row_number() OVER (ORDER BY t.coin_id, t.ts) AS i FROM (SELECT t.coin_id, t.ts FROM market t WHERE (t.coin_id, t.ts) > (:k1::text, :k2::timestamptz) ORDER BY t.coin_id, t.ts LIMIT :lim::int8) t) w WHERE w.i >= :size::int8;
SELECT t.coin_id, c.symbol, c.name, t.ts, t.price_usd, t.market_cap_usd, t.volume_24h_usd, t.rank, t.rank_source FROM market t JOIN coins c ON c.id = t.coin_id WHERE (t.coin_id, t.ts) > (:k1::text, :k2::timestamptz) ORDER BY t.coin_id, t.ts LIMIT :size::int8;
COMMIT;
