-- What each bump of a served dataset's data version changed, so that a cursor walk can
-- continue across loads that do not touch what it already read (README, "Cursors across
-- loads"; coinflow_shared::version_changes). One row per (dataset, version), written in
-- the transaction of the bump: `low_key` is the lowest key (each key column in the text
-- form cursors carry) of any row that existed before that transaction and was updated
-- or deleted by it; NULL when the transaction only inserted rows. A version without a
-- row (bumps of earlier releases, or pruned) refuses every cursor issued before it.
-- Lock: a new, empty table; the foreign key takes a SHARE ROW EXCLUSIVE lock on the
-- eight-row data_versions for a moment (readers' ACCESS SHARE does not conflict with
-- it); no warehouse table is touched.
CREATE TABLE data_version_changes (
    dataset   text   NOT NULL REFERENCES data_versions (dataset),
    version   bigint NOT NULL,
    low_key   text[],
    PRIMARY KEY (dataset, version)
);
