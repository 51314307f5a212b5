"""Black-box tests of coinflow-etl (SPEC §2, §3, §5): the built binary, small CSV files
written by each test, a fresh database per test."""

from __future__ import annotations

import filecmp
import pathlib
import re
import time

import psycopg
import pytest

from conftest import (
    ETL_LOCK_KEY,
    MARKETS_CSV,
    SAMPLE,
    Database,
    Etl,
    assert_rows_accounted,
    data_rows,
    free_port,
    write,
    write_sample,
)

SERVING_TABLES = ("coins", "market", "daily", "coin_exchanges", "traders", "positions")
ALL_TABLES = SERVING_TABLES + ("rankings", "tickers", "people", "trades", "etl_files", "etl_rejects")


def assert_counts_add_up(summary: dict) -> None:
    """Every row read ends up in exactly one bucket, per file and in the totals."""
    assert_rows_accounted(summary)


def markets_with_bad_rows(good: int, bad: int) -> str:
    """A markets file for bitcoin: `good` valid hourly rows, then `bad` rows with a negative price."""
    lines = ["coin_id,timestamp,price,market_cap,volume_24h"]
    for i in range(good):
        lines.append(f"bitcoin,2024-02-{1 + i // 24:02d}T{i % 24:02d}:00:00Z,{40000 + i},1000000,5000")
    for i in range(bad):
        lines.append(f"bitcoin,2024-03-01T{i % 24:02d}:30:00Z,-{i + 1},1000000,5000")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------
# Loading a directory.


def test_run_loads_a_directory_and_its_counts_add_up(etl: Etl, db: Database, data_dir: pathlib.Path):
    write_sample(data_dir)

    result = etl.run(data_dir)

    assert result.code == 0, result
    summary = result.summary
    assert summary["status"] == "ok"
    assert isinstance(summary["run_id"], int)
    assert_counts_add_up(summary)
    expected_datasets = {
        "coins.csv": "coins",
        "markets.csv": "markets",
        "rankings.csv": "rankings",
        "tickers.csv": "tickers",
        "people.csv": "people",
        "trades.csv": "trades",
    }
    for path, dataset in expected_datasets.items():
        f = result.file(path)
        assert (f["dataset"], f["status"]) == (dataset, "loaded"), f
        assert f["read"] == data_rows(SAMPLE[path]) == f["loaded"], f
        assert f["rejected"] == 0, f

    assert db.count("coins") == 3
    assert db.count("market") == data_rows(MARKETS_CSV)
    # The ranking observed 10 s before the first snapshots ranks them (tolerance 60 s).
    assert db.rows("SELECT coin_id, rank FROM market WHERE ts = '2024-01-01T00:00:00Z' ORDER BY rank") == [
        ("tether", 1),
        ("bitcoin", 2),
        ("ethereum", 3),
    ]
    assert db.scalar("SELECT count(*) FROM market WHERE ts = '2024-01-01T01:00:00Z' AND rank IS NOT NULL") == 0
    # Daily: bitcoin has two days, ethereum and tether one each.
    assert db.rows("SELECT coin_id, count(*) FROM daily GROUP BY coin_id ORDER BY coin_id") == [
        ("bitcoin", 2),
        ("ethereum", 1),
        ("tether", 1),
    ]
    assert db.rows("SELECT open, high, low, close FROM daily WHERE coin_id = 'bitcoin' AND day = '2024-01-01'") == [
        (42000.5, 42100.25, 42000.5, 42100.25)
    ]
    assert db.rows("SELECT coin_id, exchanges, exchange_count FROM coin_exchanges ORDER BY coin_id") == [
        ("bitcoin", ["binance", "kraken"], 2),
        ("ethereum", ["binance"], 1),
        ("tether", ["kraken"], 1),
    ]
    # Every person is a trader row, with or without trades.
    assert db.rows("SELECT person_id, last_trade_coin_id, trade_count FROM traders ORDER BY person_id") == [
        (1, "bitcoin", 2),
        (2, "ethereum", 1),
        (3, None, 0),
    ]
    net = db.scalar("SELECT net_quantity FROM positions WHERE person_id = 1 AND coin_id = 'bitcoin'")
    assert net == pytest.approx(0.4)
    assert db.rows("SELECT status FROM etl_runs") == [("ok",)]
    assert db.scalar("SELECT count(*) FROM etl_files WHERE status = 'loaded'") == len(SAMPLE)
    assert db.scalar("SELECT count(*) FROM etl_files WHERE run_id = %s", (summary["run_id"],)) == len(SAMPLE)


def test_duplicates_updates_and_zeroes_are_counted_not_lost(etl: Etl, db: Database, data_dir: pathlib.Path):
    write(data_dir / "coins.csv", SAMPLE["coins.csv"])
    write(
        data_dir / "markets.csv",
        "coin_id,timestamp,price,market_cap,volume_24h\n"
        "bitcoin,2024-01-01T00:00:00Z,42000,800000000000,100\n"
        "bitcoin,2024-01-01T01:00:00Z,42100,0,100\n"  # market cap 0 means unknown
        "ethereum,2024-01-01T00:00:00Z,2300,270000000000,100\n"
        "bitcoin,2024-01-01T00:00:00Z,42000,800000000000,100\n"  # exact duplicate
        "ethereum,2024-01-01T00:00:00Z,2301,270000000000,100\n",  # same key, new price: a conflict
    )

    result = etl.run(data_dir, "--max-reject-ratio", "0.5")

    assert result.code == 0, result
    f = result.file("markets.csv")
    assert (f["read"], f["loaded"], f["duplicate"], f["updated"], f["rejected"], f["zeroed"]) == (5, 3, 1, 0, 1, 1), f
    assert db.rows("SELECT line, reason FROM etl_rejects") == [(6, "conflicting duplicate key (first at line 4)")]
    assert db.count("market") == 3
    assert db.scalar("SELECT price_usd FROM market WHERE coin_id = 'ethereum'") == 2300
    assert db.scalar("SELECT market_cap_usd FROM market WHERE ts = '2024-01-01T01:00:00Z'") is None


def test_second_run_on_unchanged_files_changes_nothing(etl: Etl, db: Database, data_dir: pathlib.Path):
    write_sample(data_dir)
    first = etl.run(data_dir)
    assert first.code == 0, first
    before_counts = db.counts(*ALL_TABLES)
    before_files = db.fingerprint("etl_files", "t.id")
    before_market = db.fingerprint("market", "t.coin_id, t.ts")
    before_versions = db.fingerprint("data_versions", "t.dataset")

    started = time.monotonic()
    second = etl.run(data_dir)
    elapsed = time.monotonic() - started

    assert second.code == 0, second
    assert set(second.statuses().values()) == {"skipped"}, second.summary
    assert second.summary["totals"]["loaded"] == 0
    assert "skipped" in second.stdout
    assert db.counts(*ALL_TABLES) == before_counts
    assert db.fingerprint("etl_files", "t.id") == before_files
    assert db.fingerprint("market", "t.coin_id, t.ts") == before_market
    assert db.fingerprint("data_versions", "t.dataset") == before_versions, "an unchanged run bumped a data version"
    assert db.rows("SELECT status FROM etl_runs ORDER BY id") == [("ok",), ("ok",)]
    print(f"unchanged re-run: {elapsed:.2f}s (timing is reported here, judged in bench/)")


def test_a_new_file_dropped_in_loads_only_that_file(etl: Etl, db: Database, data_dir: pathlib.Path):
    write_sample(data_dir)
    assert etl.run(data_dir).code == 0
    market_before = db.count("market")
    files_before = db.rows("SELECT path, sha256, status, run_id FROM etl_files ORDER BY path")

    write(
        data_dir / "more" / "markets-2024-01-03.csv",
        "coin_id,timestamp,price,market_cap,volume_24h\n"
        "bitcoin,2024-01-03T00:00:00Z,44000,860000000000,17000000000\n"
        "tether,2024-01-03T00:00:00Z,0.9999,91000000000,31000000000\n",
    )
    result = etl.run(data_dir)

    assert result.code == 0, result
    statuses = result.statuses()
    assert statuses.pop("more/markets-2024-01-03.csv") == "loaded"
    assert set(statuses.values()) == {"skipped"}, result.summary
    assert result.file("more/markets-2024-01-03.csv")["loaded"] == 2
    assert db.count("market") == market_before + 2
    files_after = db.rows("SELECT path, sha256, status, run_id FROM etl_files ORDER BY path")
    assert [r for r in files_after if r[0] != "more/markets-2024-01-03.csv"] == files_before
    assert (
        db.scalar("SELECT run_id FROM etl_files WHERE path = 'more/markets-2024-01-03.csv'") == result.summary["run_id"]
    )


def test_force_reloads_one_unchanged_file(etl: Etl, db: Database, data_dir: pathlib.Path):
    write_sample(data_dir)
    assert etl.run(data_dir).code == 0
    market_before = db.fingerprint("market", "t.coin_id, t.ts")

    result = etl.run(data_dir, "--force", data_dir / "markets.csv")

    assert result.code == 0, result
    f = result.file("markets.csv")
    assert f["status"] == "loaded"
    assert f["read"] == f["duplicate"] == data_rows(MARKETS_CSV), f
    assert {p: s for p, s in result.statuses().items() if p != "markets.csv"} == {
        p: "skipped" for p in SAMPLE if p != "markets.csv"
    }
    assert db.fingerprint("market", "t.coin_id, t.ts") == market_before


def test_an_unrecognized_header_is_reported_and_the_rest_loads(etl: Etl, db: Database, data_dir: pathlib.Path):
    write_sample(data_dir)
    write(data_dir / "notes.csv", "colour,shape\nred,circle\n")

    result = etl.run(data_dir)

    assert result.code == 0, result
    f = result.file("notes.csv")
    assert f["status"] == "unrecognized"
    assert f["loaded"] == 0
    assert "notes.csv" in result.stdout
    assert db.scalar("SELECT status FROM etl_files WHERE path = 'notes.csv'") == "unrecognized"
    assert db.count("market") == data_rows(MARKETS_CSV)


# ------------------------------------------------------------------------------------
# Rejects and the reject budget.


def test_bad_rows_within_the_budget_are_rejected_and_kept(etl: Etl, db: Database, data_dir: pathlib.Path):
    write(data_dir / "coins.csv", SAMPLE["coins.csv"])
    write(data_dir / "markets.csv", markets_with_bad_rows(good=40, bad=1))  # 1 of 41 < 5 %

    result = etl.run(data_dir)

    assert result.code == 0, result
    f = result.file("markets.csv")
    assert (f["status"], f["loaded"], f["rejected"]) == ("loaded", 40, 1), f
    assert_counts_add_up(result.summary)
    assert db.count("market") == 40
    rejects = db.rows("SELECT run_id, file, line, column_name, raw_value, raw_line FROM etl_rejects")
    assert rejects == [
        (result.summary["run_id"], "markets.csv", 42, "price", "-1", "bitcoin,2024-03-01T00:30:00Z,-1,1000000,5000")
    ]


def test_a_file_over_the_reject_budget_is_set_aside_and_the_run_is_partial(
    etl: Etl, db: Database, data_dir: pathlib.Path
):
    write_sample(data_dir)
    write(data_dir / "bad-markets.csv", markets_with_bad_rows(good=17, bad=3))  # 15 % > 5 %

    result = etl.run(data_dir)

    assert result.code == 2, result
    assert result.summary["status"] == "partial"
    f = result.file("bad-markets.csv")
    assert f["status"] == "set_aside", f
    assert f["reason"], f
    assert f["loaded"] == 0
    assert "bad-markets.csv" in result.stdout
    assert db.rows("SELECT status, reason IS NOT NULL FROM etl_files WHERE path = 'bad-markets.csv'") == [
        ("set_aside", True)
    ]
    # None of its rows load; every other file does.
    assert db.scalar("SELECT count(*) FROM market WHERE ts >= '2024-02-01'") == 0
    assert db.count("market") == data_rows(MARKETS_CSV)
    assert db.rows("SELECT status FROM etl_runs") == [("partial",)]


def test_blank_and_set_aside_rows_are_counted_and_a_set_aside_file_is_not_reread(
    etl: Etl, db: Database, data_dir: pathlib.Path
):
    write(data_dir / "coins.csv", SAMPLE["coins.csv"])
    write(data_dir / "padded.csv", "coin_id,timestamp,price\nbitcoin,2024-01-01,1\n,,\n , ,\n")
    write(data_dir / "bad.csv", "coin_id,timestamp,price\nbitcoin,2024-02-01,1\nbitcoin,2024-02-02,-1\n")

    first = etl.run(data_dir)

    assert first.code == 2, first
    padded = first.file("padded.csv")
    assert (padded["status"], padded["read"], padded["loaded"], padded["blank"], padded["rejected"]) == ("loaded", 3, 1, 2, 0)
    bad = first.file("bad.csv")
    assert (bad["status"], bad["read"], bad["rejected"], bad["set_aside"], bad["loaded"]) == ("set_aside", 2, 1, 1, 0)
    assert db.rows("SELECT blank, set_aside FROM etl_files WHERE path IN ('padded.csv', 'bad.csv') ORDER BY path") == [
        (0, 1),
        (2, 0),
    ]

    again = etl.run(data_dir)

    assert again.code == 2, again
    assert "not read again" in again.file("bad.csv")["reason"]
    assert db.count("etl_rejects") == 1, "a re-run adds no reject rows"


def test_partial_ok_turns_exit_2_into_0_but_the_run_stays_partial(etl: Etl, db: Database, data_dir: pathlib.Path):
    write_sample(data_dir)
    write(data_dir / "bad-markets.csv", markets_with_bad_rows(good=17, bad=3))

    result = etl.run(data_dir, "--partial-ok")

    assert result.code == 0, result
    assert result.file("bad-markets.csv")["status"] == "set_aside"
    assert db.rows("SELECT status FROM etl_runs") == [("partial",)]

    # A set-aside file is retried by the next run (and set aside again, unchanged).
    again = etl.run(data_dir)
    assert again.code == 2, again
    assert again.file("bad-markets.csv")["status"] == "set_aside"


def test_max_reject_ratio_raises_the_budget(etl: Etl, db: Database, data_dir: pathlib.Path):
    write(data_dir / "coins.csv", SAMPLE["coins.csv"])
    write(data_dir / "markets.csv", markets_with_bad_rows(good=17, bad=3))

    result = etl.run(data_dir, "--max-reject-ratio", "0.2")

    assert result.code == 0, result
    f = result.file("markets.csv")
    assert (f["status"], f["loaded"], f["rejected"]) == ("loaded", 17, 3), f
    assert db.count("etl_rejects") == 3


# ------------------------------------------------------------------------------------
# Start-up: waiting for the database, the advisory lock.


def test_a_database_that_never_comes_exits_3_naming_host_and_port(etl: Etl, data_dir: pathlib.Path):
    write_sample(data_dir)
    port = free_port()  # nothing listens there
    url = f"postgres://coinflow:s3cret-password@127.0.0.1:{port}/coinflow"

    started = time.monotonic()
    result = etl("--db-wait", "2s", "run", "--data-dir", data_dir, env={"DATABASE_URL": url}, timeout=60)
    elapsed = time.monotonic() - started

    assert result.code == 3, result
    # The wait is bounded: the run above would hit its 60 s timeout otherwise.
    print(f"--db-wait 2s gave up after {elapsed:.1f}s")
    last_line = [line for line in result.stderr.splitlines() if line.strip()][-1]
    assert "127.0.0.1" in last_line and str(port) in last_line, result
    assert "s3cret-password" not in result.stdout + result.stderr, "the password leaked into the output"


@pytest.mark.own_cluster
def test_an_etl_started_before_the_database_waits_and_then_loads(
    etl_bin: pathlib.Path, own_cluster, data_dir: pathlib.Path, tmp_path: pathlib.Path
):
    write_sample(data_dir)
    etl = Etl(etl_bin, own_cluster.url, tmp_path / "work")

    proc = etl.start("--db-wait", "60s", "run", "--data-dir", data_dir)
    try:
        time.sleep(10)
        assert proc.poll() is None, "the ETL gave up before the database came"
        own_cluster.start()
        result = Etl.finish(proc, timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()

    assert result.code == 0, result
    assert "attempt" in result.stderr, "each connection attempt should be logged"
    with psycopg.connect(own_cluster.url) as conn:
        assert conn.execute("SELECT count(*) FROM market").fetchone()[0] == data_rows(MARKETS_CSV)
        assert conn.execute("SELECT status FROM etl_runs").fetchall() == [("ok",)]


def _hold_lock(db: Database) -> psycopg.Connection:
    """A session holding the ETL's advisory lock in the test database (after migrations,
    which the ETL runs before it takes the lock)."""
    conn = db.connect()
    conn.execute("SELECT pg_advisory_lock(%s)", (ETL_LOCK_KEY,))
    return conn


def test_lock_key_is_coinflow_in_ascii():
    assert ETL_LOCK_KEY == 0x636F696E666C6F77 == 7165061455055449975


def test_a_second_etl_with_no_wait_lock_exits_4_while_the_lock_is_held(etl: Etl, db: Database, data_dir: pathlib.Path):
    write_sample(data_dir)
    assert etl("run", "--data-dir", data_dir).code == 0  # migrated, data in place
    market_before = db.count("market")
    write(data_dir / "more.csv", "coin_id,timestamp,price\nbitcoin,2024-05-01,60000\n")

    holder = _hold_lock(db)
    try:
        result = etl.run(data_dir, "--no-wait-lock", timeout=60)
    finally:
        holder.close()

    assert result.code == 4, result
    assert db.count("market") == market_before
    assert db.scalar("SELECT count(*) FROM etl_files WHERE path = 'more.csv'") == 0


def test_a_second_etl_waits_for_the_lock_then_loads(etl: Etl, db: Database, data_dir: pathlib.Path):
    write_sample(data_dir)
    assert etl("run", "--data-dir", data_dir).code == 0
    write(data_dir / "more.csv", "coin_id,timestamp,price\nbitcoin,2024-05-01,60000\n")

    holder = _hold_lock(db)
    try:
        proc = etl.start("run", "--data-dir", data_dir)
        time.sleep(3)
        assert proc.poll() is None, "the second ETL did not wait for the lock"
        assert db.scalar("SELECT count(*) FROM etl_files WHERE path = 'more.csv'") == 0
    finally:
        holder.close()
    result = Etl.finish(proc, timeout=120)

    assert result.code == 0, result
    assert db.scalar("SELECT count(*) FROM etl_files WHERE path = 'more.csv' AND status = 'loaded'") == 1


def test_two_etls_started_together_load_each_row_once(etl: Etl, db: Database, data_dir: pathlib.Path):
    write_sample(data_dir)
    assert etl("run", "--data-dir", data_dir).code == 0  # migrations first: they are not what races here
    write(data_dir / "more.csv", "coin_id,timestamp,price\nbitcoin,2024-05-01,60000\nethereum,2024-05-01,3000\n")

    procs = [etl.start("run", "--data-dir", data_dir) for _ in range(2)]
    results = [Etl.finish(p, timeout=180) for p in procs]

    assert [r.code for r in results] == [0, 0], "\n\n".join(map(str, results))
    assert db.scalar("SELECT count(*) FROM etl_files WHERE path = 'more.csv'") == 1
    assert db.count("market") == data_rows(MARKETS_CSV) + 2


def test_a_missing_data_directory_is_fatal(etl: Etl, tmp_path: pathlib.Path):
    result = etl("run", "--data-dir", tmp_path / "nope")
    assert result.code == 1, result
    assert "nope" in result.stderr


# ------------------------------------------------------------------------------------
# check and generate: no database needed.


def test_check_validates_a_directory_without_any_database(etl_bin: pathlib.Path, data_dir, tmp_path):
    write_sample(data_dir)
    write(data_dir / "bad-markets.csv", markets_with_bad_rows(good=17, bad=3))
    closed = f"postgres://nobody@127.0.0.1:{free_port()}/none"
    etl = Etl(etl_bin, closed, tmp_path / "work")

    result = etl("check", data_dir, timeout=60)

    # The bad file is over budget: check reports it like a run would (exit 2).
    assert result.code == 2, result
    assert "bad-markets.csv" in result.stdout
    for name in SAMPLE:
        assert name in result.stdout, result

    (data_dir / "bad-markets.csv").unlink()
    without_url = Etl(etl_bin, None, tmp_path / "work2")
    ok = without_url("check", data_dir, timeout=60)
    assert ok.code == 0, ok


def test_generate_is_deterministic(etl_bin: pathlib.Path, tmp_path: pathlib.Path):
    etl = Etl(etl_bin, None, tmp_path / "work")

    def generate(seed: int, out: str) -> pathlib.Path:
        target = tmp_path / out
        result = etl("generate", "--coins", "8", "--days", "3", "--people", "10", "--seed", str(seed), "--out", target)
        assert result.code == 0, result
        return target

    a, b, c = generate(7, "a"), generate(7, "b"), generate(8, "c")

    names = sorted(p.name for p in a.glob("*.csv"))
    assert {"coins.csv", "tickers.csv", "people.csv", "trades.csv"} <= set(names), names
    assert any(n.startswith("markets") for n in names) and any(n.startswith("rankings") for n in names), names
    assert sorted(p.name for p in b.glob("*.csv")) == names
    match, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    assert (mismatch, errors) == ([], []), "same seed, different bytes"
    _, differ, _ = filecmp.cmpfiles(a, c, names, shallow=False)
    assert differ, "a different seed produced identical files"


def test_generated_data_loads_without_rejects(etl: Etl, db: Database, tmp_path: pathlib.Path):
    out = tmp_path / "generated"
    gen = etl("generate", "--coins", "10", "--days", "3", "--people", "15", "--seed", "11", "--out", out)
    assert gen.code == 0, gen

    result = etl.run(out)

    assert result.code == 0, result
    assert_counts_add_up(result.summary)
    assert result.summary["totals"]["rejected"] == 0
    assert all(f["status"] == "loaded" for f in result.summary["files"]), result.summary
    assert {f["path"]: f["dataset"] for f in result.summary["files"]} == {
        "coins.csv": "coins",
        "markets.csv": "markets",
        "rankings.csv": "rankings",
        "tickers.csv": "tickers",
        "people.csv": "people",
        "trades.csv": "trades",
    }
    assert db.count("coins") == 10
    assert db.count("market") > 0 and db.count("daily") > 0
    assert db.scalar("SELECT count(*) FROM market WHERE rank IS NOT NULL") > 0, "no snapshot got a rank"
    assert db.count("traders") == 15


def test_generated_errors_are_rejected_within_the_budget(etl: Etl, db: Database, tmp_path: pathlib.Path):
    out = tmp_path / "generated"
    gen = etl(
        "generate", "--coins", "20", "--days", "10", "--people", "15", "--seed", "11", "--out", out, "--with-errors"
    )
    assert gen.code == 0, gen

    result = etl.run(out)

    assert result.code == 0, result
    assert_counts_add_up(result.summary)
    assert result.summary["totals"]["rejected"] > 0
    assert db.count("etl_rejects") == result.summary["totals"]["rejected"]
    assert all(re.fullmatch(r"[a-z].*", r[0]) for r in db.rows("SELECT reason FROM etl_rejects"))
