-- POST /runtasks with 4 random known coin ids: the statements coinflow-api runs per
-- request (autocommit, no transaction block, no check-out ping), as captured from the
-- server log. The first takes the task run from the sequence and decides every id; the
-- API binds the ids as a text[], here they are looked up in bench_coin_ids (4
-- primary-key probes inside the same statement). The second (first task runs of the
-- duplicates) runs whenever an id was seen before, which is nearly every request after
-- the first seconds. Variable: ncoins.
\set a random(1, :ncoins)
\set b random(1, :ncoins)
\set c random(1, :ncoins)
\set d random(1, :ncoins)
WITH run AS MATERIALIZED (SELECT nextval('task_run_seq') AS run),
req AS (SELECT DISTINCT unnest(ARRAY[(SELECT id FROM bench_coin_ids WHERE i = :a), (SELECT id FROM bench_coin_ids WHERE i = :b), (SELECT id FROM bench_coin_ids WHERE i = :c), (SELECT id FROM bench_coin_ids WHERE i = :d)]::text[]) AS id),
known AS (
    SELECT c.id,
           ARRAY(SELECT DISTINCT e FROM unnest(ce.exchanges) AS e ORDER BY e) AS exchanges
    FROM req
    JOIN coins c ON c.id = req.id
    LEFT JOIN coin_exchanges ce ON ce.coin_id = c.id
),
ins AS (
    INSERT INTO task_results (coin_id, exchanges, task_run)
    SELECT id, exchanges, (SELECT run FROM run) FROM known ORDER BY id
    ON CONFLICT (coin_id) DO NOTHING
    RETURNING coin_id
)
SELECT r.run, k.id, k.exchanges, (i.coin_id IS NOT NULL) AS accepted
FROM run r LEFT JOIN (known k LEFT JOIN ins i ON i.coin_id = k.id) ON true;
SELECT coin_id, task_run FROM task_results WHERE coin_id = ANY(ARRAY[(SELECT id FROM bench_coin_ids WHERE i = :a), (SELECT id FROM bench_coin_ids WHERE i = :b), (SELECT id FROM bench_coin_ids WHERE i = :c), (SELECT id FROM bench_coin_ids WHERE i = :d)]::text[]);
