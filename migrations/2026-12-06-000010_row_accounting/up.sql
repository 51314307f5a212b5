-- Every row read is accounted for: blank rows (every cell empty) and the valid rows of a
-- set-aside file get counters of their own, so that for every file
-- rows_read = loaded + duplicate + updated + rejected + blank + set_aside.
-- A column with a constant default is added without rewriting the table.
ALTER TABLE etl_files ADD COLUMN blank bigint NOT NULL DEFAULT 0;
ALTER TABLE etl_files ADD COLUMN set_aside bigint NOT NULL DEFAULT 0;
-- The coin list a set-aside file was judged against: an unchanged file is judged again
-- only when the coin list changed (or the run is forced).
ALTER TABLE etl_files ADD COLUMN coin_list text;
-- Set-aside files of earlier releases counted their valid rows nowhere (nothing of such
-- a file loaded, so those are the rows that were not rejected). One row per file and
-- run: a short update.
UPDATE etl_files SET set_aside = rows_read - rejected
 WHERE status = 'set_aside' AND rows_read > rejected;
-- Rejects are kept once per (file content, line): found through the file's ledger rows.
CREATE INDEX etl_files_sha_idx ON etl_files (sha256);
-- Where a coin comes from: 'listed' (a coin list or listings file) or 'inferred' (made
-- from the symbol and name of a history file's rows). A constant default: no rewrite.
ALTER TABLE coins ADD COLUMN origin text NOT NULL DEFAULT 'listed';
