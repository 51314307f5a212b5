DROP INDEX positions_coin_person_idx;
