ALTER TABLE coins DROP COLUMN origin;
DROP INDEX etl_files_sha_idx;
ALTER TABLE etl_files DROP COLUMN coin_list;
ALTER TABLE etl_files DROP COLUMN set_aside;
ALTER TABLE etl_files DROP COLUMN blank;
