-- GET /top?limit=N&datetime=T when the answer is cached (warm: the same instant again):
-- the one statement coinflow-api runs, as captured from the server log: the data
-- versions of top and coins (the cache holds answers of one pair of versions). Requests
-- waiting at the same moment share one such statement (the API's version checker), so
-- one per request is the most the API sends. The ranking itself (top-cold.sql) ran once,
-- on the first request. No transaction block, no check-out ping. Variables: none.
SELECT (SELECT version FROM data_versions WHERE dataset = 'top') AS top, (SELECT version FROM data_versions WHERE dataset = 'coins') AS coins;
