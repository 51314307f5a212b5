-- coinflow-api: chunked reads of positions filtered by coin walk (coin_id, person_id), so
-- `WHERE coin_id = $c AND person_id > $p ORDER BY person_id` is an index range scan.
CREATE INDEX positions_coin_person_idx ON positions (coin_id, person_id);
