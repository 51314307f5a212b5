-- What the file system said of a loaded file when it was hashed, so that an unchanged
-- re-run can recognise it by (path, size_bytes, mtime_ns, ctime_ns, inode) without
-- re-hashing it (README, "Unchanged files"). NULL: not recorded (rows of earlier
-- releases, files modified too recently to trust their stat); such a file is hashed.
-- Lock: ACCESS EXCLUSIVE on etl_files for a catalog change only (nullable columns
-- without a default: no table rewrite, no scan), so it is held for milliseconds.
ALTER TABLE etl_files
    ADD COLUMN mtime_ns bigint,
    ADD COLUMN ctime_ns bigint,
    ADD COLUMN inode bigint;
