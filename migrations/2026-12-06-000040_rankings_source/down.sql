-- Back to one ranking per (coin_id, ts). Where several sources ranked the same coin and
-- instant, only the preferred one is kept (the ETL's order: coinmarketcap, coingecko,
-- cryptocompare, then the others by name); the other rows are deleted.
-- Locks: ROW EXCLUSIVE for the delete, SHARE for the index build (writers wait, readers
-- go on), ACCESS EXCLUSIVE for the catalog-only swap.
DELETE FROM rankings r
USING (
    SELECT ctid, row_number() OVER (
        PARTITION BY coin_id, ts
        ORDER BY CASE source WHEN 'coinmarketcap' THEN 0 WHEN 'coingecko' THEN 1
                             WHEN 'cryptocompare' THEN 2 ELSE 3 END, source
    ) AS n
    FROM rankings
) d
WHERE r.ctid = d.ctid AND d.n > 1;

CREATE UNIQUE INDEX rankings_coin_ts_key ON rankings (coin_id, ts);

ALTER TABLE rankings
    DROP CONSTRAINT rankings_pkey,
    ADD CONSTRAINT rankings_pkey PRIMARY KEY USING INDEX rankings_coin_ts_key;
