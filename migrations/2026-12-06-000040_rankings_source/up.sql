-- A ranking is keyed by (coin_id, ts, source): CoinMarketCap's rank and CryptoCompare's
-- volume rank of the same coin and instant are both kept (the earlier key (coin_id, ts)
-- let the second source overwrite the first). Which one ranks a market snapshot is the
-- ETL's source preference (README, "/top in detail").
--
-- Upgrades a populated warehouse without a long exclusive lock. Every stored row is
-- already unique under the wider key (it is unique under the narrower one) and all three
-- columns are NOT NULL, so the swap needs no table scan.

-- 1. The new key's index, built while the table stays readable. Lock: SHARE on rankings
--    for the length of the build (readers go on; writers wait, and the only writer of
--    rankings is the ETL, which runs this migration before it loads). The API never
--    reads rankings (it reads market.rank and top_slots).
CREATE UNIQUE INDEX rankings_coin_ts_source_key ON rankings (coin_id, ts, source);

-- 2. The swap: the old primary key goes, the index built above becomes the primary key
--    (renamed to rankings_pkey). Lock: ACCESS EXCLUSIVE on rankings, catalog changes
--    only (no scan, no index build), so it is held for milliseconds until the migration
--    commits.
ALTER TABLE rankings
    DROP CONSTRAINT rankings_pkey,
    ADD CONSTRAINT rankings_pkey PRIMARY KEY USING INDEX rankings_coin_ts_source_key;
