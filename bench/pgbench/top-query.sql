-- Not run by pgbench: the source of the EXPLAIN (ANALYZE, BUFFERS) of the /top ranking in
-- bench/results/api-explain.txt. The ranking the handler runs for a cold request (TOP_SQL
-- in api/src/routes/top.rs): the instant's hour bucket of top_slots walked in rank order
-- (the API computes the bucket in Rust, here it is computed from :at). Variables: :at,
-- :lim.

SELECT row_number() OVER (
           ORDER BY s.rank ASC NULLS LAST, s.market_cap_usd DESC NULLS LAST,
                    s.volume_24h_usd DESC NULLS LAST, s.coin_id
       ) AS rank,
       c.id, upper(c.symbol), c.name, s.price_usd, s.market_cap_usd, s.volume_24h_usd,
       s.rank_source
FROM (
    SELECT t.coin_id, t.price_usd, t.market_cap_usd, t.volume_24h_usd, t.rank, t.rank_source
    FROM top_slots t
    WHERE t.bucket = floor(extract(epoch FROM :at) / 3600)::int8 AND t.valid_from <= :at AND t.valid_to > :at
    ORDER BY t.rank ASC NULLS LAST, t.market_cap_usd DESC NULLS LAST,
             t.volume_24h_usd DESC NULLS LAST, t.coin_id
    LIMIT :lim
) s
JOIN coins c ON c.id = s.coin_id
ORDER BY rank;
