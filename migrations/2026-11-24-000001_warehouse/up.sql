-- coinflow warehouse: coin dimension, raw facts, derived serving tables, ETL ledger, coin tasks.
-- Prices, caps and volumes are float8: it round-trips every value an export writes
-- (up to 17 significant digits) and keeps COPY and aggregation fast.

CREATE TABLE coins (
    id      text PRIMARY KEY,
    symbol  text NOT NULL,
    name    text NOT NULL,
    cmc_id  bigint
);
CREATE INDEX coins_symbol_lower_idx ON coins (lower(symbol));
CREATE INDEX coins_name_lower_idx ON coins (lower(name));

CREATE TABLE coin_aliases (
    source       text NOT NULL,
    external_id  text NOT NULL,
    coin_id      text NOT NULL REFERENCES coins (id),
    PRIMARY KEY (source, external_id)
);

-- Price snapshots, with the rank of the ranking source as-of joined in by the ETL.
CREATE TABLE market (
    coin_id         text NOT NULL REFERENCES coins (id),
    ts              timestamptz NOT NULL,
    price_usd       float8 NOT NULL,
    market_cap_usd  float8,
    volume_24h_usd  float8,
    rank            integer,
    rank_source     text,
    PRIMARY KEY (coin_id, ts)
);
CREATE INDEX market_ts_idx ON market (ts);
-- Which coins have ranked snapshots (the rank refresh skips the others).
CREATE INDEX market_ranked_coin_idx ON market (coin_id) WHERE rank IS NOT NULL;

-- The ranking source: ranks observed at their own timestamps.
CREATE TABLE rankings (
    coin_id         text NOT NULL REFERENCES coins (id),
    ts              timestamptz NOT NULL,
    rank            integer NOT NULL,
    volume_24h_usd  float8,
    source          text NOT NULL,
    PRIMARY KEY (coin_id, ts)
);

CREATE TABLE candles (
    coin_id         text NOT NULL REFERENCES coins (id),
    ts              timestamptz NOT NULL,
    open            float8 NOT NULL,
    high            float8 NOT NULL,
    low             float8 NOT NULL,
    close           float8 NOT NULL,
    volume_usd      float8,
    market_cap_usd  float8,
    PRIMARY KEY (coin_id, ts)
);

-- A coin listed on an exchange; an absent base or target is stored as ''.
CREATE TABLE tickers (
    coin_id   text NOT NULL REFERENCES coins (id),
    exchange  text NOT NULL,
    base      text NOT NULL DEFAULT '',
    target    text NOT NULL DEFAULT '',
    PRIMARY KEY (coin_id, exchange, base, target)
);

CREATE TABLE people (
    person_id   bigint PRIMARY KEY,
    first_name  text NOT NULL,
    last_name   text NOT NULL,
    email       text NOT NULL,
    date_added  timestamptz
);

-- Trades are keyed by all their columns; `id` keeps input order for tie-breaking.
CREATE TABLE trades (
    id         bigserial PRIMARY KEY,
    person_id  bigint NOT NULL REFERENCES people (person_id),
    ts         timestamptz NOT NULL,
    coin_id    text NOT NULL REFERENCES coins (id),
    side       text NOT NULL CHECK (side IN ('buy', 'sell')),
    quantity   float8,
    price      float8,
    CONSTRAINT trades_natural_key UNIQUE NULLS NOT DISTINCT (person_id, ts, coin_id, side, quantity, price)
);
CREATE INDEX trades_coin_idx ON trades (coin_id);

-- Derived serving tables (rebuilt by the ETL's transform stage).
CREATE TABLE daily (
    coin_id              text NOT NULL REFERENCES coins (id),
    day                  date NOT NULL,
    open                 float8 NOT NULL,
    high                 float8 NOT NULL,
    low                  float8 NOT NULL,
    close                float8 NOT NULL,
    avg_price            float8 NOT NULL,
    max_market_cap_usd   float8,
    last_volume_usd      float8,
    samples              integer NOT NULL,
    source               text NOT NULL CHECK (source IN ('candles', 'market')),
    PRIMARY KEY (coin_id, day)
);

CREATE TABLE coin_exchanges (
    coin_id         text PRIMARY KEY REFERENCES coins (id),
    exchanges       text[] NOT NULL,
    exchange_count  integer NOT NULL
);

CREATE TABLE traders (
    person_id            bigint PRIMARY KEY REFERENCES people (person_id),
    first_name           text NOT NULL,
    last_name            text NOT NULL,
    email                text NOT NULL,
    date_added           timestamptz,
    last_trade_ts        timestamptz,
    last_trade_coin_id   text,
    last_trade_side      text,
    last_trade_quantity  float8,
    last_trade_price     float8,
    trade_count          bigint NOT NULL
);

CREATE TABLE positions (
    person_id         bigint NOT NULL REFERENCES people (person_id),
    coin_id           text NOT NULL REFERENCES coins (id),
    net_quantity      float8 NOT NULL,
    trade_count       bigint NOT NULL,
    avg_buy_price     float8,
    last_price_usd    float8,
    market_value_usd  float8,
    PRIMARY KEY (person_id, coin_id)
);

-- The ledger.
CREATE TABLE etl_runs (
    id           bigserial PRIMARY KEY,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    status       text NOT NULL CHECK (status IN ('running', 'ok', 'partial', 'failed', 'abandoned')),
    pid          integer NOT NULL,
    host         text NOT NULL,
    data_dir     text NOT NULL,
    message      text,
    summary      jsonb
);
CREATE INDEX etl_runs_status_idx ON etl_runs (status);

CREATE TABLE etl_files (
    id          bigserial PRIMARY KEY,
    run_id      bigint NOT NULL REFERENCES etl_runs (id),
    path        text NOT NULL,
    sha256      text NOT NULL,
    dataset     text,
    size_bytes  bigint NOT NULL,
    status      text NOT NULL CHECK (status IN ('loaded', 'set_aside', 'unrecognized')),
    reason      text,
    rows_read   bigint NOT NULL DEFAULT 0,
    loaded      bigint NOT NULL DEFAULT 0,
    duplicate   bigint NOT NULL DEFAULT 0,
    updated     bigint NOT NULL DEFAULT 0,
    rejected    bigint NOT NULL DEFAULT 0,
    zeroed      bigint NOT NULL DEFAULT 0,
    seconds     float8 NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX etl_files_run_idx ON etl_files (run_id);
CREATE INDEX etl_files_loaded_sha_idx ON etl_files (sha256) WHERE status = 'loaded';

CREATE TABLE etl_rejects (
    run_id       bigint NOT NULL REFERENCES etl_runs (id),
    file         text NOT NULL,
    line         bigint NOT NULL,
    column_name  text,
    raw_value    text,
    reason       text NOT NULL,
    raw_line     text NOT NULL,
    PRIMARY KEY (run_id, file, line)
);

-- One row per served dataset; bumped only by runs that changed it.
CREATE TABLE data_versions (
    dataset     text PRIMARY KEY,
    version     bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO data_versions (dataset) VALUES
    ('market'), ('daily'), ('coins'), ('coin_exchanges'), ('traders'), ('positions'), ('rejects');

-- Coin tasks (POST /runtasks): each request takes the next task run.
CREATE SEQUENCE task_run_seq;

CREATE TABLE task_results (
    coin_id     text PRIMARY KEY REFERENCES coins (id),
    exchanges   text[] NOT NULL,
    task_run    bigint NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX task_results_order_idx ON task_results (task_run, coin_id);
