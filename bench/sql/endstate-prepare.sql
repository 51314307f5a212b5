-- The psql and pgloader baselines that reach coinflow-etl's end state, step 1 of 2: run
-- right after coinflow's migrations, in a fresh database. Records the definition of every
-- key, index and foreign key of the tables a markets + rankings load fills (market,
-- rankings, daily, top_slots) in bench_ddl, defines bench_drop / bench_rebuild, and the
-- unindexed, unlogged table markets.csv is copied into before the as-of rank join.
-- Plain SQL (no psql meta-commands): pgloader runs it too.
CREATE TABLE bench_ddl (
    tbl       text NOT NULL,
    name      text NOT NULL,
    -- p: primary key / unique, i: index, f: foreign key (the build order)
    kind      text NOT NULL,
    create_sql text NOT NULL,
    drop_sql   text NOT NULL
);
INSERT INTO bench_ddl
SELECT c.conrelid::regclass::text, c.conname,
       CASE WHEN c.contype = 'f' THEN 'f' ELSE 'p' END,
       format('ALTER TABLE %s ADD CONSTRAINT %I %s', c.conrelid::regclass, c.conname, pg_get_constraintdef(c.oid)),
       format('ALTER TABLE %s DROP CONSTRAINT %I', c.conrelid::regclass, c.conname)
FROM pg_constraint c
WHERE c.conrelid IN ('market'::regclass, 'rankings'::regclass, 'daily'::regclass, 'top_slots'::regclass)
  AND c.contype IN ('p', 'u', 'f');
INSERT INTO bench_ddl
SELECT i.indrelid::regclass::text, i.indexrelid::regclass::text, 'i',
       pg_get_indexdef(i.indexrelid), format('DROP INDEX %s', i.indexrelid::regclass)
FROM pg_index i
WHERE i.indrelid IN ('market'::regclass, 'rankings'::regclass, 'daily'::regclass, 'top_slots'::regclass)
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid);

-- Drops the keys, indexes and foreign keys of table `t` (kinds: any of 'p', 'i', 'f').
CREATE FUNCTION bench_drop(t text, kinds text DEFAULT 'pif') RETURNS void LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
    FOR r IN SELECT * FROM bench_ddl WHERE tbl = t AND strpos(kinds, kind) > 0
             ORDER BY CASE kind WHEN 'f' THEN 0 WHEN 'i' THEN 1 ELSE 2 END LOOP
        EXECUTE r.drop_sql;
    END LOOP;
END $$;

-- Builds the keys and indexes (kinds 'pi') or foreign keys ('f') of table `t` that do not
-- exist (pgloader's `drop indexes` rebuilds rankings' key itself).
CREATE FUNCTION bench_rebuild(t text, kinds text DEFAULT 'pi') RETURNS void LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
    FOR r IN SELECT * FROM bench_ddl WHERE tbl = t AND strpos(kinds, kind) > 0
             ORDER BY CASE kind WHEN 'p' THEN 0 WHEN 'i' THEN 1 ELSE 2 END, name LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = t::regclass AND conname = r.name)
           AND to_regclass(r.name) IS NULL THEN
            EXECUTE r.create_sql;
        END IF;
    END LOOP;
END $$;

-- rankings.csv has no source column: coinflow-etl stores 'rankings' for its rows.
ALTER TABLE rankings ALTER COLUMN source SET DEFAULT 'rankings';

-- markets.csv as it is, before the rank join.
CREATE UNLOGGED TABLE market_csv (
    coin_id         text,
    ts              timestamptz,
    price_usd       float8,
    market_cap_usd  float8,
    volume_24h_usd  float8
);
