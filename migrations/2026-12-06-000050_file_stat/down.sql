ALTER TABLE etl_files DROP COLUMN mtime_ns, DROP COLUMN ctime_ns, DROP COLUMN inode;
