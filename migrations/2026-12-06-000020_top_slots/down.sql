DELETE FROM data_versions WHERE dataset = 'top';
DROP FUNCTION top_slots_of(text[], timestamptz[]);
DROP TABLE top_slots;
