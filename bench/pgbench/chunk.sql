-- GET /read/next-chunk (market, no filter): the one statement coinflow-api runs per
-- request, as captured from the server log (bench/results/api-statements.log): the rows
-- after the cursor (size + 1 of them: the last one only says that more follow), each
-- carrying the data versions of market and coins, with the coin dimension joined to the
-- already-limited rows and bounded by the cursor's coin. No transaction block (one
-- statement is one snapshot) and no check-out ping. The API keeps it prepared (diesel's
-- statement cache) and reads the result in binary; run with -M prepared.
-- Variables: k1 (coin id), k2 (timestamp) = the cursor's key, lim = size + 1.
SELECT (SELECT version FROM data_versions WHERE dataset = 'market') AS v_market, (SELECT version FROM data_versions WHERE dataset = 'coins') AS v_coins, t.coin_id, c.symbol, c.name, t.ts, t.price_usd, t.market_cap_usd, t.volume_24h_usd, t.rank, t.rank_source FROM (SELECT t.coin_id, t.ts, t.price_usd, t.market_cap_usd, t.volume_24h_usd, t.rank, t.rank_source FROM market t WHERE (t.coin_id, t.ts) > (:k1, :k2::timestamptz) ORDER BY t.coin_id, t.ts LIMIT :lim::int8) t JOIN coins c ON c.id = t.coin_id AND c.id >= :k1 ORDER BY t.coin_id, t.ts;
