"""Black-box tests of `coinflow-etl fetch` and `watch --fetch` (README "Live data"): the
built binary against a local HTTP server that answers in the providers' documented
shapes; a fresh database per test. No internet."""

from __future__ import annotations

import http.server
import json
import pathlib
import threading
from collections.abc import Iterator
from urllib.parse import parse_qs, urlparse

import pytest

from conftest import Database, Etl


class Provider:
    """A local stand-in for a provider: path + page -> JSON body; records every request."""

    def __init__(self) -> None:
        self.pages: dict[tuple[str, str], object] = {}
        self.requests: list[tuple[str, dict[str, str], dict[str, str]]] = []
        provider = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                provider.requests.append((url.path, query, {k.lower(): v for k, v in self.headers.items()}))
                page = query.get("page", query.get("start", ""))
                body = provider.pages.get((url.path, page), provider.pages.get((url.path, "*")))
                status = 200 if body is not None else 404
                data = json.dumps(body if body is not None else {"error": "not found"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def provider() -> Iterator[Provider]:
    p = Provider()
    yield p
    p.server.shutdown()


def cg_coin(coin_id: str, symbol: str, rank: int | None, price: float | None) -> dict:
    return {
        "id": coin_id,
        "symbol": symbol,
        "name": symbol.upper(),
        "current_price": price,
        "market_cap": 1_000_000,
        "market_cap_rank": rank,
        "total_volume": 5000,
        "last_updated": "2026-12-06T11:59:30.000Z",
    }


def env_for(provider: Provider) -> dict[str, str | None]:
    return {
        "COINGECKO_BASE_URL": provider.url,
        "CRYPTOCOMPARE_BASE_URL": provider.url,
        "COINGECKO_API_KEY": "bb-secret-key",
        "COINGECKO_API_PLAN": None,
        "COINGECKO_CALLS_PER_MINUTE": "6000",
        "CRYPTOCOMPARE_CALLS_PER_MINUTE": "6000",
        "FETCH_MAX_ATTEMPTS": "1",
    }


def test_fetch_markets_with_load_fills_the_warehouse_and_archives_the_files(
    etl: Etl, db: Database, data_dir: pathlib.Path, provider: Provider
) -> None:
    provider.pages[("/coins/markets", "1")] = [
        cg_coin("bitcoin", "btc", 1, 43000.5),
        cg_coin("ethereum", "eth", 2, 2300),
    ]
    provider.pages[("/coins/markets", "2")] = [cg_coin("solana", "sol", 3, None), cg_coin("tiny", "tiny", None, 0.01)]
    provider.pages[("/coins/markets", "3")] = []
    result = etl(
        "fetch",
        "coingecko",
        "markets",
        "--per-page",
        "2",
        "--load",
        "--partial-ok",
        "--max-reject-ratio",
        "0.5",
        "--data-dir",
        data_dir,
        env=env_for(provider),
    )
    assert result.code == 0, result
    assert "bb-secret-key" not in result.stdout + result.stderr
    assert [q["page"] for _, q, _ in provider.requests] == ["1", "2", "3"]
    assert all(h.get("x-cg-demo-api-key") == "bb-secret-key" for _, _, h in provider.requests)
    assert db.scalar("SELECT count(*) FROM market") == 3
    assert db.scalar("SELECT rank FROM market WHERE coin_id = 'tiny'") is None
    assert db.scalar("SELECT reason || ':' || column_name FROM etl_rejects") == "missing required value:price"
    assert list((data_dir / "fetched" / "coingecko").glob("*.csv")) == []
    archived = sorted(p.name for p in (data_dir / "fetched" / "loaded" / "coingecko").glob("*.csv"))
    assert len(archived) == 3 and all(n.startswith("markets-") for n in archived), archived

    # A plain run afterwards finds nothing new: the archive is not scanned.
    again = etl.run(data_dir)
    assert again.code == 0, again
    assert again.summary is not None and again.summary["files"] == []


def test_a_failed_page_exits_5_and_the_next_fetch_resumes_there(
    etl: Etl, data_dir: pathlib.Path, provider: Provider
) -> None:
    provider.pages[("/data/top/totalvolfull", "0")] = {
        "Message": "Success",
        "Data": [{"CoinInfo": {"Name": "BTC", "FullName": "Bitcoin"}, "RAW": {"USD": {"VOLUME24HOURTO": 9}}}],
    }
    toplist = ("fetch", "cryptocompare", "toplist", "--top", "2", "--per-page", "1", "--data-dir", data_dir)
    result = etl(*toplist, env=env_for(provider))
    assert result.code == 5, result
    assert "FAILED toplist@1 page 2" in result.stdout, result
    assert len(list((data_dir / "fetched" / "cryptocompare").glob("toplist-*.csv"))) == 1

    provider.pages[("/data/top/totalvolfull", "1")] = {
        "Message": "Success",
        "Data": [{"CoinInfo": {"Name": "ETH", "FullName": "Ethereum"}, "RAW": {"USD": {"VOLUME24HOURTO": 8}}}],
    }
    provider.requests.clear()
    resumed = etl(*toplist, env=env_for(provider))
    assert resumed.code == 0, resumed
    assert "resumed toplist@1 at page 2" in resumed.stdout
    assert [q["page"] for _, q, _ in provider.requests] == ["1"]


def test_watch_fetch_runs_its_cycles_and_books_the_calls(
    etl: Etl, db: Database, data_dir: pathlib.Path, provider: Provider
) -> None:
    provider.pages[("/coins/markets", "*")] = [cg_coin("bitcoin", "btc", 1, 43000.5)]
    result = etl(
        "watch",
        "--data-dir",
        data_dir,
        "--interval",
        "0s",
        "--cycles",
        "2",
        "--fetch",
        "coingecko:markets",
        env=env_for(provider),
    )
    assert result.code == 0, result
    assert len(provider.requests) == 2
    book = json.loads((data_dir / "fetched" / ".budget.json").read_text())
    assert book["calls"] == {"coingecko": 2}
    assert "budget coingecko: 2 of 10000 calls used" in result.stdout + result.stderr
    assert db.scalar("SELECT count(*) FROM market") == 1
    assert len(list((data_dir / "fetched" / "loaded" / "coingecko").glob("*.csv"))) == 2
