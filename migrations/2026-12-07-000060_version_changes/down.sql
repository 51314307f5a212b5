DROP TABLE data_version_changes;
