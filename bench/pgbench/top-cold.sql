-- GET /top?limit=N&datetime=T for a T not in the API's cache (cold): the statements
-- coinflow-api runs for such a request, as captured from the server log
-- (bench/results/api-statements.log; api/src/routes/top.rs): the data versions of top
-- and coins (shared by the requests waiting at the same moment, so at most one per
-- request), then the ranking (TOP_SQL) with the instant, the limit and the instant's hour
-- bucket of top_slots. The API computes the bucket in Rust and binds the instant as text;
-- here both come from a random microsecond :us in [:us0, :us1), as top_cold.py draws
-- instants for the API. No transaction block, no check-out ping.
-- Variables: us0, us1 (microseconds since 1970 bounding the history), lim.
\set us random(:us0, :us1 - 1)
\set b :us / 3600000000
SELECT (SELECT version FROM data_versions WHERE dataset = 'top') AS top, (SELECT version FROM data_versions WHERE dataset = 'coins') AS coins;
SELECT row_number() OVER (
           ORDER BY s.rank ASC NULLS LAST, s.market_cap_usd DESC NULLS LAST,
                    s.volume_24h_usd DESC NULLS LAST, s.coin_id
       ) AS rank,
       c.id, upper(c.symbol), c.name, s.price_usd, s.market_cap_usd, s.volume_24h_usd,
       s.rank_source
FROM (
    SELECT t.coin_id, t.price_usd, t.market_cap_usd, t.volume_24h_usd, t.rank, t.rank_source
    FROM top_slots t
    WHERE t.bucket = :b::int8 AND t.valid_from <= (timestamptz 'epoch' + :us * interval '1 microsecond') AND t.valid_to > (timestamptz 'epoch' + :us * interval '1 microsecond')
    ORDER BY t.rank ASC NULLS LAST, t.market_cap_usd DESC NULLS LAST,
             t.volume_24h_usd DESC NULLS LAST, t.coin_id
    LIMIT :lim::int8
) s
JOIN coins c ON c.id = s.coin_id
ORDER BY rank;
