// @generated automatically by Diesel CLI.

diesel::table! {
    candles (coin_id, interval, period_start) {
        coin_id -> Text,
        ts -> Timestamptz,
        open -> Float8,
        high -> Float8,
        low -> Float8,
        close -> Float8,
        volume_usd -> Nullable<Float8>,
        market_cap_usd -> Nullable<Float8>,
        interval -> Text,
        period_start -> Timestamptz,
    }
}

diesel::table! {
    coin_aliases (source, external_id) {
        source -> Text,
        external_id -> Text,
        coin_id -> Text,
    }
}

diesel::table! {
    coin_exchanges (coin_id) {
        coin_id -> Text,
        exchanges -> Array<Text>,
        exchange_count -> Int4,
    }
}

diesel::table! {
    coins (id) {
        id -> Text,
        symbol -> Text,
        name -> Text,
        cmc_id -> Nullable<Int8>,
        origin -> Text,
    }
}

diesel::table! {
    daily (coin_id, day) {
        coin_id -> Text,
        day -> Date,
        open -> Float8,
        high -> Float8,
        low -> Float8,
        close -> Float8,
        avg_price -> Float8,
        max_market_cap_usd -> Nullable<Float8>,
        last_volume_usd -> Nullable<Float8>,
        samples -> Int4,
        source -> Text,
    }
}

diesel::table! {
    data_version_changes (dataset, version) {
        dataset -> Text,
        version -> Int8,
        low_key -> Nullable<Array<Nullable<Text>>>,
    }
}

diesel::table! {
    data_versions (dataset) {
        dataset -> Text,
        version -> Int8,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    etl_files (id) {
        id -> Int8,
        run_id -> Int8,
        path -> Text,
        sha256 -> Text,
        dataset -> Nullable<Text>,
        size_bytes -> Int8,
        status -> Text,
        reason -> Nullable<Text>,
        rows_read -> Int8,
        loaded -> Int8,
        duplicate -> Int8,
        updated -> Int8,
        rejected -> Int8,
        zeroed -> Int8,
        seconds -> Float8,
        created_at -> Timestamptz,
        blank -> Int8,
        set_aside -> Int8,
        coin_list -> Nullable<Text>,
        mtime_ns -> Nullable<Int8>,
        ctime_ns -> Nullable<Int8>,
        inode -> Nullable<Int8>,
    }
}

diesel::table! {
    etl_rejects (run_id, file, line) {
        run_id -> Int8,
        file -> Text,
        line -> Int8,
        column_name -> Nullable<Text>,
        raw_value -> Nullable<Text>,
        reason -> Text,
        raw_line -> Text,
    }
}

diesel::table! {
    etl_runs (id) {
        id -> Int8,
        started_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
        status -> Text,
        pid -> Int4,
        host -> Text,
        data_dir -> Text,
        message -> Nullable<Text>,
        summary -> Nullable<Jsonb>,
    }
}

diesel::table! {
    market (coin_id, ts) {
        coin_id -> Text,
        ts -> Timestamptz,
        price_usd -> Float8,
        market_cap_usd -> Nullable<Float8>,
        volume_24h_usd -> Nullable<Float8>,
        rank -> Nullable<Int4>,
        rank_source -> Nullable<Text>,
    }
}

diesel::table! {
    people (person_id) {
        person_id -> Int8,
        first_name -> Text,
        last_name -> Text,
        email -> Text,
        date_added -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    positions (person_id, coin_id) {
        person_id -> Int8,
        coin_id -> Text,
        net_quantity -> Float8,
        trade_count -> Int8,
        avg_buy_price -> Nullable<Float8>,
        last_price_usd -> Nullable<Float8>,
        market_value_usd -> Nullable<Float8>,
    }
}

diesel::table! {
    rankings (coin_id, ts, source) {
        coin_id -> Text,
        ts -> Timestamptz,
        rank -> Int4,
        volume_24h_usd -> Nullable<Float8>,
        source -> Text,
    }
}

diesel::table! {
    task_results (coin_id) {
        coin_id -> Text,
        exchanges -> Array<Text>,
        task_run -> Int8,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    tickers (coin_id, exchange, base, target) {
        coin_id -> Text,
        exchange -> Text,
        base -> Text,
        target -> Text,
    }
}

diesel::table! {
    top_slots (coin_id, valid_from, bucket) {
        bucket -> Int4,
        coin_id -> Text,
        valid_from -> Timestamptz,
        valid_to -> Timestamptz,
        price_usd -> Float8,
        market_cap_usd -> Nullable<Float8>,
        volume_24h_usd -> Nullable<Float8>,
        rank -> Nullable<Int4>,
        rank_source -> Text,
    }
}

diesel::table! {
    traders (person_id) {
        person_id -> Int8,
        first_name -> Text,
        last_name -> Text,
        email -> Text,
        date_added -> Nullable<Timestamptz>,
        last_trade_ts -> Nullable<Timestamptz>,
        last_trade_coin_id -> Nullable<Text>,
        last_trade_side -> Nullable<Text>,
        last_trade_quantity -> Nullable<Float8>,
        last_trade_price -> Nullable<Float8>,
        trade_count -> Int8,
    }
}

diesel::table! {
    trades (id) {
        id -> Int8,
        person_id -> Int8,
        ts -> Timestamptz,
        coin_id -> Text,
        side -> Text,
        quantity -> Nullable<Float8>,
        price -> Nullable<Float8>,
    }
}

diesel::joinable!(candles -> coins (coin_id));
diesel::joinable!(coin_aliases -> coins (coin_id));
diesel::joinable!(coin_exchanges -> coins (coin_id));
diesel::joinable!(daily -> coins (coin_id));
diesel::joinable!(data_version_changes -> data_versions (dataset));
diesel::joinable!(etl_files -> etl_runs (run_id));
diesel::joinable!(etl_rejects -> etl_runs (run_id));
diesel::joinable!(market -> coins (coin_id));
diesel::joinable!(positions -> coins (coin_id));
diesel::joinable!(positions -> people (person_id));
diesel::joinable!(rankings -> coins (coin_id));
diesel::joinable!(task_results -> coins (coin_id));
diesel::joinable!(tickers -> coins (coin_id));
diesel::joinable!(traders -> people (person_id));
diesel::joinable!(trades -> coins (coin_id));
diesel::joinable!(trades -> people (person_id));

diesel::allow_tables_to_appear_in_same_query!(
    candles,
    coin_aliases,
    coin_exchanges,
    coins,
    daily,
    data_version_changes,
    data_versions,
    etl_files,
    etl_rejects,
    etl_runs,
    market,
    people,
    positions,
    rankings,
    task_results,
    tickers,
    top_slots,
    traders,
    trades,
);
