SELECT row_number() OVER (
           ORDER BY l.rank ASC NULLS LAST, l.market_cap_usd DESC NULLS LAST,
                    l.volume_24h_usd DESC NULLS LAST, c.id
       ) AS rank,
       c.id, c.symbol, c.name, l.price_usd, l.market_cap_usd, l.volume_24h_usd
FROM coins c
CROSS JOIN LATERAL (
    SELECT m.price_usd, m.market_cap_usd, m.volume_24h_usd, m.rank
    FROM market m
    WHERE m.coin_id = c.id AND m.ts <= :at AND m.ts >= :at - interval '1 day'
    ORDER BY m.ts DESC
    LIMIT 1
) l
ORDER BY rank
LIMIT :lim;
