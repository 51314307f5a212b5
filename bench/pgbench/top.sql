-- GET /top?limit=200&datetime=...: the statement coinflow-api runs for a request once the
-- answer is cached, as captured from the server log: the data versions of top and
-- coins (the cache holds answers of one pair of versions; the ranking itself,
-- top-query.sql, runs once per instant, limit and versions). Requests waiting at the
-- same moment share one such statement (the API's version checker), so one per request
-- is the most the API sends. No transaction block, no check-out ping. Variables: none.
SELECT (SELECT version FROM data_versions WHERE dataset = 'top') AS top, (SELECT version FROM data_versions WHERE dataset = 'coins') AS coins;
