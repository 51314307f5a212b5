-- GET /top?limit=200 (no datetime: the latest market timestamp): the statements
-- coinflow-api runs per request, as captured from the server log. The API feeds max(ts)
-- into the ranking query; here :at is that same value. Variables: at, lim.
SELECT 1;
BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY;
SELECT version FROM data_versions WHERE dataset = 'market';
SELECT max(ts) AS ts FROM market;
WITH latest AS (
    SELECT DISTINCT ON (m.coin_id) m.coin_id, m.price_usd, m.market_cap_usd, m.volume_24h_usd, m.rank
    FROM market m
    WHERE m.ts <= :at::timestamptz AND m.ts >= :at::timestamptz - interval '1 day'
    ORDER BY m.coin_id, m.ts DESC
)
SELECT row_number() OVER (
           ORDER BY l.rank ASC NULLS LAST, l.market_cap_usd DESC NULLS LAST,
                    l.volume_24h_usd DESC NULLS LAST, l.coin_id
       ) AS rank,
       l.coin_id AS id, c.symbol, c.name, l.price_usd, l.market_cap_usd, l.volume_24h_usd
FROM latest l JOIN coins c ON c.id = l.coin_id
ORDER BY rank
LIMIT :lim;
COMMIT;
