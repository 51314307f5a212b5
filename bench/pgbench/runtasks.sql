-- POST /runtasks with 4 random known coin ids: the statements coinflow-api runs per
-- request (no check-out ping), as in api/src/routes/tasks.rs. In one transaction: the
-- advisory locks of the ids' buckets (FNV-1a of the id mod 64 in the API; here the
-- bucket is the id's number mod 64, the same spread) and the task run, then the decision
-- of every id under that run. After the commit, the first task runs of the duplicates,
-- which runs whenever an id was seen before (nearly every request after the first
-- seconds). The API binds the ids as a text[]; here they are looked up in
-- bench_coin_ids (4 primary-key probes inside the statement). Variable: ncoins.
\set a random(1, :ncoins)
\set b random(1, :ncoins)
\set c random(1, :ncoins)
\set d random(1, :ncoins)
BEGIN;
WITH locks AS MATERIALIZED (
    SELECT count(pg_advisory_xact_lock(1952543595, b::int4)) AS n
    FROM (SELECT DISTINCT b FROM unnest(ARRAY[:a % 64, :b % 64, :c % 64, :d % 64]) AS b ORDER BY b) s
)
SELECT nextval('task_run_seq') AS run FROM locks \gset
WITH req AS (SELECT DISTINCT unnest(ARRAY[(SELECT id FROM bench_coin_ids WHERE i = :a), (SELECT id FROM bench_coin_ids WHERE i = :b), (SELECT id FROM bench_coin_ids WHERE i = :c), (SELECT id FROM bench_coin_ids WHERE i = :d)]::text[]) AS id),
known AS (
    SELECT c.id,
           ARRAY(SELECT DISTINCT e FROM unnest(ce.exchanges) AS e ORDER BY e) AS exchanges
    FROM req
    JOIN coins c ON c.id = req.id
    LEFT JOIN coin_exchanges ce ON ce.coin_id = c.id
),
ins AS (
    INSERT INTO task_results (coin_id, exchanges, task_run)
    SELECT id, exchanges, :run::int8 FROM known ORDER BY id
    ON CONFLICT (coin_id) DO NOTHING
    RETURNING coin_id
)
SELECT k.id, k.exchanges, (i.coin_id IS NOT NULL) AS accepted
FROM known k LEFT JOIN ins i ON i.coin_id = k.id;
COMMIT;
SELECT coin_id, task_run FROM task_results WHERE coin_id = ANY(ARRAY[(SELECT id FROM bench_coin_ids WHERE i = :a), (SELECT id FROM bench_coin_ids WHERE i = :b), (SELECT id FROM bench_coin_ids WHERE i = :c), (SELECT id FROM bench_coin_ids WHERE i = :d)]::text[]);
