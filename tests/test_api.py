"""Black-box tests of coinflow-api (SPEC §6) against a database the real ETL loaded.

By default the module generates data with `coinflow-etl generate`, loads it into a fresh
database and starts the API binary on a free port. With API_URL set (the compose `tests`
service) it drives that running API instead and reads the stack's database through
DATABASE_URL; every expectation is computed from SQL, so either data set works.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pathlib
import urllib.parse
from datetime import datetime, timedelta, timezone

import pytest
import requests

from conftest import Api, Database, Etl, assert_rows_accounted, start_api, write

pytestmark = pytest.mark.api

PROBLEM = "application/problem+json"


# ------------------------------------------------------------------------------------
# The API under test.


class Served:
    def __init__(self, api: Api, db: Database, private: bool, task_dir: pathlib.Path | None):
        self.api = api
        self.db = db
        self.private = private
        self.task_dir = task_dir


@pytest.fixture(scope="module")
def served(request, server_url: str, etl_bin: pathlib.Path, tmp_path_factory) -> Served:
    api_url = os.environ.get("API_URL")
    if api_url:
        name = urllib.parse.urlsplit(server_url).path.lstrip("/") or "postgres"
        api = Api(api_url)
        wait_ready(api)
        yield Served(api, Database(server_url, name), private=False, task_dir=None)
        api.stop()
        return
    db = request.getfixturevalue("module_db")
    api_bin = request.getfixturevalue("api_bin")
    tmp = tmp_path_factory.mktemp("api")
    etl = Etl(etl_bin, db.url, tmp / "work")
    gen = etl("generate", "--coins", "12", "--days", "4", "--people", "20", "--seed", "5", "--out", tmp / "data")
    assert gen.code == 0, gen
    loaded = etl.run(tmp / "data")
    assert loaded.code == 0, loaded
    task_dir = tmp / "tasks"
    task_dir.mkdir()
    api = start_api(api_bin, db.url, tmp / "api", TASK_OUTPUT_DIR=str(task_dir))
    wait_ready(api)
    yield Served(api, db, private=True, task_dir=task_dir)
    api.stop()


def wait_ready(api: Api, timeout: float = 60) -> None:
    import time

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = api.get("/health/ready", timeout=3)
            if last.status_code == 200:
                return
        except requests.RequestException as e:
            last = e
        time.sleep(0.3)
    raise AssertionError(f"/health/ready never became 200: {getattr(last, 'text', last)}\n{api.log_tail()}")


def assert_problem(resp: requests.Response, status: int) -> dict:
    """The response is an RFC 7807 problem with this status, and leaks nothing."""
    assert resp.status_code == status, f"{resp.request.method} {resp.url}: {resp.status_code} {resp.text[:500]}"
    assert resp.headers.get("Content-Type", "").split(";")[0].strip() == PROBLEM, resp.headers
    body = resp.json()
    for key in ("type", "title", "status", "detail"):
        assert key in body, body
    assert body["status"] == status, body
    text = resp.text.lower()
    for leak in ("<html", "select ", "panicked", "stack backtrace", "diesel::"):
        assert leak not in text, f"{leak!r} in a problem body: {resp.text[:500]}"
    return body


def parse_ts(value) -> datetime:
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc)
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def walk(api: Api, first: str) -> tuple[list[dict], int]:
    """Follows next_cursor from a first chunk; returns every row and the number of chunks."""
    resp = api.get(first)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    rows, chunks = list(body["data"]), 1
    while body["has_more"]:
        assert body["next_cursor"], body
        resp = api.get("/read/next-chunk", params={"cursor": body["next_cursor"]})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        rows += body["data"]
        chunks += 1
        assert chunks < 10_000, "runaway pagination"
    assert body["next_cursor"] is None
    return rows, chunks


# ------------------------------------------------------------------------------------
# Basics and health.


def test_root_says_ok(served: Served):
    resp = served.api.get("/")
    assert resp.status_code == 200
    assert resp.json() == {"status": "OK"}


def test_health_live_and_ready_after_an_etl_run(served: Served):
    assert served.api.get("/health/live").status_code == 200
    assert served.api.get("/health/ready").status_code == 200


def test_ready_is_503_before_any_etl_run(db: Database, api_factory):
    api = api_factory(db.url)  # an empty database: no migrations, no runs
    assert api.get("/health/live").status_code == 200
    resp = api.get("/health/ready")
    assert resp.status_code == 503, resp.text


# ------------------------------------------------------------------------------------
# Chunked reads.


def test_first_chunk_is_ten_market_rows_with_a_next_link(served: Served):
    resp = served.api.get("/read/first-chunk")

    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert body["dataset"] == "market"
    assert body["size"] == 10
    total = served.db.count("market")
    assert len(body["data"]) == min(10, total)
    assert body["has_more"] is (total > 10)
    if body["has_more"]:
        assert 'rel="next"' in resp.headers.get("Link", "")
        assert body["next_cursor"] in urllib.parse.unquote(resp.headers["Link"])
    row = body["data"][0]
    for key in ("coin_id", "ts", "price_usd", "market_cap_usd", "volume_24h_usd", "rank"):
        assert key in row, row
    first = served.db.rows("SELECT coin_id, ts FROM market ORDER BY coin_id, ts LIMIT 1")[0]
    assert (row["coin_id"], parse_ts(row["ts"])) == first


def test_walking_every_market_chunk_visits_each_row_once_in_key_order(served: Served):
    rows, chunks = walk(served.api, "/read/first-chunk?size=997")

    expected = served.db.rows("SELECT coin_id, ts FROM market ORDER BY coin_id, ts")
    assert len(rows) == len(expected) == served.db.count("market")
    assert [(r["coin_id"], parse_ts(r["ts"])) for r in rows] == expected
    assert chunks == max(1, -(-len(expected) // 997))


@pytest.mark.parametrize(
    "dataset, key_sql",
    [
        ("daily", "SELECT coin_id, day::text FROM daily ORDER BY coin_id, day"),
        ("coins", "SELECT id FROM coins ORDER BY id"),
        ("coin_exchanges", "SELECT coin_id FROM coin_exchanges ORDER BY coin_id"),
        ("traders", "SELECT person_id FROM traders ORDER BY person_id"),
        ("positions", "SELECT person_id, coin_id FROM positions ORDER BY person_id, coin_id"),
    ],
)
def test_every_dataset_reads_completely_in_key_order(served: Served, dataset: str, key_sql: str):
    rows, _ = walk(served.api, f"/read/{dataset}?size=7")

    expected = served.db.rows(key_sql)
    assert len(rows) == len(expected), dataset
    key_columns = {
        "daily": ("coin_id", "day"),
        "coins": ("id",),
        "coin_exchanges": ("coin_id",),
        "traders": ("person_id",),
        "positions": ("person_id", "coin_id"),
    }[dataset]
    got = [tuple(str(r[k])[:10] if k == "day" else r[k] for k in key_columns) for r in rows]
    assert got == expected


def test_market_filtered_by_coin_and_time_range(served: Served):
    coin, lo, hi = served.db.rows(
        "SELECT coin_id, min(ts), max(ts) FROM market GROUP BY coin_id ORDER BY count(*) DESC, coin_id LIMIT 1"
    )[0]
    # One second off the hour: no row sits on a bound, so inclusive or exclusive bounds agree.
    start = lo + (hi - lo) / 4 + timedelta(seconds=1)
    end = lo + (hi - lo) * 3 / 4 + timedelta(seconds=1)
    params = urllib.parse.urlencode({"coin": coin, "from": start.isoformat(), "to": end.isoformat(), "size": 50})

    rows, _ = walk(served.api, f"/read/market?{params}")

    expected = served.db.scalar(
        "SELECT count(*) FROM market WHERE coin_id = %s AND ts >= %s AND ts <= %s", (coin, start, end)
    )
    assert len(rows) == expected > 0
    assert {r["coin_id"] for r in rows} == {coin}
    assert all(start <= parse_ts(r["ts"]) <= end for r in rows)


def test_csv_and_ndjson_chunks_carry_the_same_rows(served: Served):
    as_json = served.api.get("/read/first-chunk?size=25").json()["data"]

    csv_resp = served.api.get("/read/first-chunk?size=25&format=csv")
    assert csv_resp.status_code == 200, csv_resp.text
    assert csv_resp.headers["Content-Type"].startswith("text/csv")
    csv_rows = list(csv.DictReader(io.StringIO(csv_resp.text)))
    assert [r["coin_id"] for r in csv_rows] == [r["coin_id"] for r in as_json]

    nd = served.api.get("/read/first-chunk?size=25", headers={"Accept": "application/x-ndjson"})
    assert nd.status_code == 200, nd.text
    nd_rows = [json.loads(line) for line in nd.text.splitlines() if line.strip()]
    assert [r["coin_id"] for r in nd_rows] == [r["coin_id"] for r in as_json]


def test_etag_gets_304_on_if_none_match(served: Served):
    first = served.api.get("/read/first-chunk")
    etag = first.headers.get("ETag")
    assert etag, first.headers
    again = served.api.get("/read/first-chunk", headers={"If-None-Match": etag})
    assert again.status_code == 304
    other = served.api.get("/read/first-chunk?size=11", headers={"If-None-Match": etag})
    assert other.status_code == 200, "the ETag must depend on the request too"


def test_a_tampered_cursor_is_400(served: Served):
    cursor = served.api.get("/read/first-chunk?size=2").json()["next_cursor"]
    assert cursor
    flipped = cursor[:-3] + ("A" if cursor[-3] != "A" else "B") + cursor[-2:]
    assert_problem(served.api.get("/read/next-chunk", params={"cursor": flipped}), 400)
    assert_problem(served.api.get("/read/next-chunk", params={"cursor": "not-a-cursor"}), 400)


def test_a_cursor_survives_appends_and_is_409_once_a_row_behind_it_changes(
    db: Database, etl_bin: pathlib.Path, api_factory, tmp_path: pathlib.Path
):
    # Its own database and API: this test re-runs the ETL.
    etl = Etl(etl_bin, db.url, tmp_path / "work")
    data = tmp_path / "data"
    assert etl("generate", "--coins", "3", "--days", "1", "--people", "2", "--seed", "1", "--out", data).code == 0
    assert etl.run(data).code == 0
    api = api_factory(db.url)
    wait_ready(api)
    first = api.get("/read/first-chunk?size=2").json()
    cursor = first["next_cursor"]
    assert cursor
    coin, ts = first["data"][0]["coin_id"], first["data"][0]["ts"]

    # A load that only appends (a row ahead of the cursor): the walk goes on and sees it.
    write(data / "later.csv", f"coin_id,timestamp,price\n{coin},2031-01-01T00:00:00Z,1\n")
    assert etl.run(data).code == 0
    walked, page = [], api.get("/read/next-chunk", params={"cursor": cursor})
    while True:
        assert page.status_code == 200, page.text
        body = page.json()
        walked += [(r["coin_id"], r["ts"]) for r in body["data"]]
        if not body["has_more"]:
            break
        page = api.get("/read/next-chunk", params={"cursor": body["next_cursor"]})
    assert (coin, "2031-01-01T00:00:00Z") in walked

    # A load that updates a row at or before the cursor's position: 409, saying why.
    write(data / "fix.csv", f"coin_id,timestamp,price\n{coin},{ts},12345\n")
    assert etl.run(data).code == 0
    body = assert_problem(api.get("/read/next-chunk", params={"cursor": cursor}), 409)
    assert "at or before the cursor's position" in body["detail"], body


@pytest.mark.parametrize(
    "path, status",
    [
        ("/read/first-chunk?size=0", 400),
        ("/read/first-chunk?size=10001", 400),
        ("/read/first-chunk?size=abc", 400),
        ("/read/first-chunk?colour=red", 400),
        ("/read/market?from=yesterday", 400),
        ("/read/nosuchdataset", 404),
        ("/read/next-chunk", 400),
        ("/no/such/route", 404),
        ("/runs/999999999", 404),
    ],
)
def test_bad_read_requests_get_problem_json(served: Served, path: str, status: int):
    assert_problem(served.api.get(path), status)


def test_a_wrong_method_is_a_problem_not_html(served: Served):
    resp = served.api.request("DELETE", "/top?limit=1")
    assert resp.status_code in (404, 405), resp.text
    assert_problem(resp, resp.status_code)


# ------------------------------------------------------------------------------------
# /top


def expected_top(db: Database, at: datetime, limit: int) -> list[str]:
    return [
        r[0]
        for r in db.rows(
            """
            WITH latest AS (
                SELECT DISTINCT ON (coin_id) coin_id, rank, market_cap_usd, volume_24h_usd
                FROM market WHERE ts <= %(at)s AND ts >= %(at)s - interval '1 day'
                ORDER BY coin_id, ts DESC)
            SELECT coin_id FROM latest
            ORDER BY rank NULLS LAST, market_cap_usd DESC NULLS LAST, volume_24h_usd DESC NULLS LAST, coin_id
            LIMIT %(limit)s""",
            {"at": at, "limit": limit},
        )
    ]


def test_top_as_json_ranks_the_latest_rows(served: Served):
    resp = served.api.get("/top", params={"limit": 5})

    assert resp.status_code == 200, resp.text
    body = resp.json()
    latest = served.db.scalar("SELECT max(ts) FROM market")
    assert parse_ts(body["as_of"]) == latest
    data = body["data"]
    assert [d["rank"] for d in data] == list(range(1, len(data) + 1))
    assert len(data) == min(5, served.db.scalar("SELECT count(DISTINCT coin_id) FROM market"))
    for d in data:
        for key in ("rank", "id", "symbol", "name", "price_usd", "market_cap_usd", "volume_24h_usd"):
            assert key in d, d
    assert [d["id"] for d in data] == expected_top(served.db, latest, 5)


def test_top_as_csv_has_the_original_header(served: Served):
    resp = served.api.get("/top", params={"limit": 7, "format": "csv"})

    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(resp.text)))
    assert rows[0] == ["Rank", "Symbol", "Price USD"]
    as_json = served.api.get("/top", params={"limit": 7}).json()["data"]
    assert [r[0] for r in rows[1:]] == [str(i) for i in range(1, len(as_json) + 1)]
    assert [r[1] for r in rows[1:]] == [d["symbol"] for d in as_json]
    assert [float(r[2]) for r in rows[1:]] == pytest.approx([d["price_usd"] for d in as_json])

    by_accept = served.api.get("/top", params={"limit": 7}, headers={"Accept": "text/csv"})
    assert by_accept.status_code == 200
    assert list(csv.reader(io.StringIO(by_accept.text))) == rows


def test_top_at_a_past_datetime(served: Served):
    lo, hi = served.db.rows("SELECT min(ts), max(ts) FROM market")[0]
    at = lo + (hi - lo) / 2
    unix = int(at.timestamp())

    resp = served.api.get("/top", params={"limit": 3, "datetime": str(unix)})

    assert resp.status_code == 200, resp.text
    at_second = datetime.fromtimestamp(unix, timezone.utc)
    assert [d["id"] for d in resp.json()["data"]] == expected_top(served.db, at_second, 3)


@pytest.mark.parametrize(
    "params, status",
    [
        ({}, 400),
        ({"limit": 0}, 400),
        ({"limit": 5001}, 400),
        ({"limit": "ten"}, 400),
        ({"limit": 3, "datetime": "not-a-date"}, 400),
        ({"limit": 3, "format": "xml"}, 400),
        ({"limit": 3, "datetime": "1990-01-01"}, 404),
    ],
)
def test_bad_top_requests_get_problem_json(served: Served, params: dict, status: int):
    assert_problem(served.api.get("/top", params=params), status)


# ------------------------------------------------------------------------------------
# Tasks: POST /runtasks (alias POST /coins) and GET /coins.


def known_task_results(db: Database) -> dict[str, int]:
    return dict(db.rows("SELECT coin_id, task_run FROM task_results"))


def exchanges_of(db: Database, coin: str) -> list[str]:
    rows = db.rows("SELECT DISTINCT exchange FROM tickers WHERE coin_id = %s ORDER BY exchange", (coin,))
    return [r[0] for r in rows]


def check_task(db: Database, body: dict, ids: list[str], before: dict[str, int]) -> None:
    """The response classifies each id as the state before the request says it must."""
    known = {r[0] for r in db.rows("SELECT id FROM coins")}
    accepted = {a["id"]: a["exchanges"] for a in body["accepted"]}
    duplicates = {d["id"]: d["first_task_run"] for d in body["duplicates"]}
    seen_now: set[str] = set()
    for coin in ids:
        if coin not in known:
            assert coin in body["invalid"], (coin, body)
        elif coin in before:
            assert duplicates.get(coin) == before[coin], (coin, body)
        elif coin in seen_now:
            assert duplicates.get(coin) == body["task_run"], (coin, body)
        else:
            assert accepted.get(coin) == exchanges_of(db, coin), (coin, body)
            seen_now.add(coin)


def test_tasks_as_json_and_csv_then_listed_by_get_coins(served: Served):
    db = served.db
    coins = [r[0] for r in db.rows("SELECT id FROM coins ORDER BY id LIMIT 3")]
    assert len(coins) == 3

    before = known_task_results(db)
    first_ids = [coins[0], coins[1], "no-such-coin-xyz"]
    first = served.api.post("/runtasks", json={"coins": first_ids})
    assert first.status_code == 200, first.text
    first_body = first.json()
    assert isinstance(first_body["task_run"], int)
    check_task(db, first_body, first_ids, before)
    assert first_body["invalid"] == ["no-such-coin-xyz"]

    before = known_task_results(db)
    second_ids = [coins[0], coins[2]]
    second = served.api.post(
        "/coins",
        data=("coins\r\n" + "\r\n".join(second_ids)).encode(),  # CRLF, no trailing newline
        headers={"Content-Type": "text/csv; charset=utf-8"},
    )
    assert second.status_code == 200, second.text
    second_body = second.json()
    assert second_body["task_run"] > first_body["task_run"]
    check_task(db, second_body, second_ids, before)
    assert [d["id"] for d in second_body["duplicates"]][:1] == [coins[0]]

    listed, _ = walk_coins(served.api)
    by_id = {c["id"]: c for c in listed}
    for coin in coins:
        assert coin in by_id, listed
        assert by_id[coin]["taskRun"] == known_task_results(db)[coin]
        assert by_id[coin]["exchanges"] == exchanges_of(db, coin)
    runs = [c["taskRun"] for c in listed]
    assert runs == sorted(runs), "GET /coins lists results in task order"
    assert len(listed) == db.count("task_results")

    if served.private:
        outputs = sorted(served.task_dir.glob("output_file_*.json"))
        assert any(p.name.endswith(f"_{first_body['task_run']}.json") for p in outputs), outputs


def walk_coins(api: Api) -> tuple[list[dict], int]:
    resp = api.get("/coins", params={"size": 2})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    rows, pages = list(body["coins"]), 1
    while body["has_more"]:
        resp = api.get("/coins", params={"size": 2, "cursor": body["next_cursor"]})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        rows += body["coins"]
        pages += 1
        assert pages < 10_000
    return rows, pages


def test_exchange_stats_are_json(served: Served):
    resp = served.api.get("/exchanges/stats")
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    resp.json()
    filtered = served.api.get("/exchanges/stats", params={"contains": "zzzz-no-exchange"})
    assert filtered.status_code == 200, filtered.text
    filtered.json()


@pytest.mark.parametrize(
    "content_type, body, status",
    [
        ("text/plain", b"bitcoin", 415),
        ("application/xml", b"<coins/>", 415),
        ("application/json", b'{"coins": [', 400),
        ("application/json", b"not json", 400),
        ("application/json", b'{"coins": 5}', 422),
        ("application/json", b'{"ids": ["bitcoin"]}', 422),
        ("text/csv", b"", 400),
        ("text/csv", b"name\nbitcoin\n", 400),
        ("application/json", json.dumps({"coins": [f"c{i}" for i in range(10_001)]}).encode(), 413),
    ],
)
def test_bad_task_bodies_get_problem_json(served: Served, content_type: str, body: bytes, status: int):
    resp = served.api.post("/runtasks", data=body, headers={"Content-Type": content_type})
    assert_problem(resp, status)


def test_write_token_guards_posts_when_set(db: Database, etl_bin: pathlib.Path, api_factory, tmp_path):
    etl = Etl(etl_bin, db.url, tmp_path / "work")
    data = tmp_path / "data"
    assert etl("generate", "--coins", "3", "--days", "1", "--people", "2", "--seed", "1", "--out", data).code == 0
    assert etl.run(data).code == 0
    api = api_factory(db.url, API_WRITE_TOKEN="t0ken-for-tests")

    assert_problem(api.post("/runtasks", json={"coins": ["bitcoin"]}), 401)
    wrong = api.post("/runtasks", json={"coins": ["bitcoin"]}, headers={"Authorization": "Bearer nope"})
    assert_problem(wrong, 401)
    ok = api.post("/runtasks", json={"coins": ["bitcoin"]}, headers={"Authorization": "Bearer t0ken-for-tests"})
    assert ok.status_code == 200, ok.text
    assert api.get("/coins").status_code == 200, "reads need no token"


# ------------------------------------------------------------------------------------
# Runs and documentation.


def test_runs_list_the_etl_runs_with_file_counts(served: Served):
    last_run = served.db.scalar("SELECT max(id) FROM etl_runs")
    resp = served.api.get("/runs")
    assert resp.status_code == 200, resp.text
    assert str(last_run) in resp.text

    one = served.api.get(f"/runs/{last_run}")
    assert one.status_code == 200, one.text
    text = one.text
    status = served.db.scalar("SELECT status FROM etl_runs WHERE id = %s", (last_run,))
    assert status in text
    for path in (r[0] for r in served.db.rows("SELECT path FROM etl_files WHERE run_id = %s", (last_run,))):
        assert path in text, f"{path} missing from /runs/{last_run}"
    assert_rows_accounted(runs=[one.json(), *resp.json()["data"]])


def test_openapi_describes_the_endpoints_and_docs_are_served(served: Served):
    spec = served.api.get("/openapi.json")
    assert spec.status_code == 200, spec.text
    doc = spec.json()
    assert str(doc.get("openapi", "")).startswith("3")
    for path in ("/read/first-chunk", "/read/next-chunk", "/top", "/runtasks", "/coins", "/exchanges/stats", "/runs"):
        assert path in doc["paths"], f"{path} not in the OpenAPI document"
    docs = served.api.get("/docs", allow_redirects=True)
    assert docs.status_code == 200
    assert "html" in docs.headers.get("Content-Type", "")


# ------------------------------------------------------------------------------------
# The database going away.


@pytest.mark.own_cluster
def test_an_unreachable_database_is_503_with_retry_after(own_cluster, etl_bin: pathlib.Path, api_factory, tmp_path):
    own_cluster.start()
    etl = Etl(etl_bin, own_cluster.url, tmp_path / "work")
    data = tmp_path / "data"
    assert etl("generate", "--coins", "3", "--days", "1", "--people", "2", "--seed", "1", "--out", data).code == 0
    assert etl.run(data).code == 0
    api = api_factory(own_cluster.url)
    wait_ready(api)

    own_cluster.stop()

    resp = api.get("/read/first-chunk", timeout=60)
    assert_problem(resp, 503)
    assert resp.headers.get("Retry-After"), resp.headers
    assert api.get("/health/ready", timeout=60).status_code == 503
    assert api.get("/health/live").status_code == 200

    own_cluster.start()
    wait_ready(api)
    assert api.get("/read/first-chunk").status_code == 200
