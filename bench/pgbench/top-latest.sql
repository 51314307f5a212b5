-- GET /top?limit=200 (no datetime: the latest market timestamp): the statement
-- coinflow-api runs for a request once the answer is cached, as captured from the server
-- log: the data versions of top and coins, shared by the requests waiting at the same
-- moment (one per request at most). The latest instant (SELECT max(ts) FROM market) and
-- the ranking (top-query.sql) run once per data versions. Variables: none.
SELECT (SELECT version FROM data_versions WHERE dataset = 'top') AS top, (SELECT version FROM data_versions WHERE dataset = 'coins') AS coins;
