"""Fixtures of coinflow's black-box suite: the real binaries against a real PostgreSQL.

Environment (scripts/test.sh sets all of it):

- DATABASE_URL: a PostgreSQL server where each test creates, and then drops, its own
  database (the user needs CREATEDB).
- COINFLOW_ETL_BIN, COINFLOW_API_BIN: the built binaries (default:
  ${CARGO_TARGET_DIR:-target}/debug/coinflow-{etl,api}).
- API_URL: when set, tests/test_api.py drives that running API (the compose stack) and
  reads its database through DATABASE_URL, instead of starting the API binary itself.
- COINFLOW_SKIP_OWN_CLUSTER=1: skip the tests marked `own_cluster`, which start a private
  PostgreSQL cluster from local server binaries (PG_BINDIR, PATH or /usr/lib/postgresql)
  because they must stop or delay the database. Only the compose `tests` service sets it;
  anywhere else a missing binary fails those tests instead of skipping them.

A missing binary, variable or server fails the tests that need it, loudly: nothing is
skipped for lack of a dependency.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from typing import Any, Iterator

import psycopg
import pytest
import requests
from psycopg import sql

ROOT = pathlib.Path(__file__).resolve().parent.parent

#: The advisory-lock key that serialises ETL runs: "coinflow" in ASCII as a signed i64.
ETL_LOCK_KEY = int.from_bytes(b"coinflow", "big", signed=True)


# ------------------------------------------------------------------------------------
# Collection: own_cluster tests are skipped only on explicit request.


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("COINFLOW_SKIP_OWN_CLUSTER") != "1":
        return
    skip = pytest.mark.skip(
        reason="needs its own PostgreSQL cluster; COINFLOW_SKIP_OWN_CLUSTER=1 (compose): run it with scripts/test.sh"
    )
    for item in items:
        if "own_cluster" in item.keywords:
            item.add_marker(skip)


# ------------------------------------------------------------------------------------
# Small helpers.


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_database(url: str, name: str) -> str:
    """The same server URL naming another database."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


def host_port(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    return parts.hostname or "localhost", parts.port or 5432


def write(path: pathlib.Path, text: str) -> pathlib.Path:
    """Writes a fixture file (creating its folders), exactly as given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    return path


def wait_until(predicate, timeout: float, interval: float = 0.2, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _binary(var: str, name: str) -> pathlib.Path:
    configured = os.environ.get(var)
    if configured:
        path = pathlib.Path(configured)
    else:
        target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
        path = (ROOT / target / "debug" / name) if not target.is_absolute() else target / "debug" / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"{name} binary not found at {path}: build it (cargo build --bins) or set {var}", pytrace=False)
    return path


# ------------------------------------------------------------------------------------
# Databases: one fresh database per test on DATABASE_URL's server.


@dataclass
class Database:
    url: str
    name: str

    def connect(self, **kwargs: Any) -> psycopg.Connection:
        kwargs.setdefault("autocommit", True)
        kwargs.setdefault("connect_timeout", 10)
        return psycopg.connect(self.url, **kwargs)

    def rows(self, query: str, params: Any = None) -> list[tuple]:
        with self.connect() as conn:
            return conn.execute(query, params).fetchall()

    def scalar(self, query: str, params: Any = None) -> Any:
        rows = self.rows(query, params)
        return rows[0][0] if rows else None

    def count(self, table: str) -> int:
        return self.scalar(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)).as_string())

    def counts(self, *tables: str) -> dict[str, int]:
        return {t: self.count(t) for t in tables}

    def fingerprint(self, table: str, order_by: str) -> str:
        """md5 over every row of a table in a fixed order: equal fingerprints, equal contents."""
        return self.scalar(f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY {order_by}), '')) FROM {table} t")


def create_database(server_url: str, prefix: str = "coinflow_bb") -> Database:
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return Database(with_database(server_url, name), name)


def drop_database(server_url: str, db: Database) -> None:
    with psycopg.connect(server_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db.name)))


@pytest.fixture(scope="session")
def server_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if not url:
        pytest.fail("DATABASE_URL is not set: run the suite through scripts/test.sh", pytrace=False)
    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as e:
        host, port = host_port(url)
        pytest.fail(f"PostgreSQL at {host}:{port} (DATABASE_URL) is not reachable: {e}", pytrace=False)
    return url


@pytest.fixture
def db(server_url: str) -> Iterator[Database]:
    """A fresh, empty database on DATABASE_URL's server, dropped after the test."""
    database = create_database(server_url)
    try:
        yield database
    finally:
        drop_database(server_url, database)


@pytest.fixture(scope="module")
def module_db(server_url: str) -> Iterator[Database]:
    """A fresh database shared by the tests of one module."""
    database = create_database(server_url)
    try:
        yield database
    finally:
        drop_database(server_url, database)


# ------------------------------------------------------------------------------------
# The ETL binary.


@dataclass(repr=False)
class Result:
    """What a finished process did."""

    args: list[str]
    code: int
    stdout: str
    stderr: str
    summary: dict | None = None

    def __str__(self) -> str:
        return (
            f"$ {' '.join(self.args)}\nexit {self.code}\n--- stdout\n{self.stdout[-4000:]}"
            f"\n--- stderr\n{self.stderr[-4000:]}"
        )

    __repr__ = __str__

    def file(self, path: str) -> dict:
        """The summary entry of one input file (path relative to the data directory)."""
        assert self.summary is not None, "run without --summary"
        found = [f for f in self.summary["files"] if f["path"] == path]
        assert len(found) == 1, f"{path} not in the summary: {[f['path'] for f in self.summary['files']]}"
        return found[0]

    def statuses(self) -> dict[str, str]:
        assert self.summary is not None, "run without --summary"
        return {f["path"]: f["status"] for f in self.summary["files"]}


# ------------------------------------------------------------------------------------
# Every row accounted for (issue 12): one helper, run after every ETL run of the suite.

#: The outcomes a row read can have; each row read is counted in exactly one.
ROW_OUTCOMES = ("loaded", "duplicate", "updated", "rejected", "blank", "set_aside")
#: Every counter of a file, as the summary and /runs/{id} name them.
COUNTERS = ("read", *ROW_OUTCOMES, "zeroed")


def assert_file_counts(counts: dict, where: str) -> None:
    """read = loaded + duplicate + updated + rejected + blank + set_aside, and zeroed
    only for a file whose rows loaded."""
    outcomes = {k: counts[k] for k in ROW_OUTCOMES}
    assert counts["read"] == sum(outcomes.values()), f"{where}: read {counts['read']} != sum of {outcomes}"
    assert all(v >= 0 for v in outcomes.values()), f"{where}: {counts}"
    if counts.get("status") in ("set_aside", "unrecognized", "skipped"):
        assert counts["zeroed"] == 0, f"{where}: zeroed counts rows that were not loaded: {counts}"


def assert_rows_accounted(summary: dict | None = None, database_url: str | None = None, runs: list[dict] | None = None) -> None:
    """Checks the row identity of every file: in a run summary (run.json), in the
    database's ledger (every file of every run, `rejected` against `etl_rejects`) and in
    `/runs/{id}` answers (`runs`). Each source that is given is checked."""
    reports = [("run.json", summary)] if summary is not None else []
    reports += [(f"/runs/{run['id']}", run) for run in runs or []]
    for source, report in reports:
        totals = dict.fromkeys(COUNTERS, 0)
        for f in report["files"]:
            assert_file_counts(f, f"{source} {f['path']}")
            for key in COUNTERS:
                totals[key] += f[key]
        assert {k: report["totals"][k] for k in COUNTERS} == totals, f"{source}: {report['totals']}"
    if database_url is None:
        return
    with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as conn:
        ledger = conn.execute(
            "SELECT run_id, path, sha256, status, rows_read, loaded, duplicate, updated, rejected, blank, set_aside, zeroed, "
            "rank() OVER (PARTITION BY sha256 ORDER BY run_id DESC) = 1 AS latest, "
            "(SELECT count(*) FROM etl_rejects r WHERE EXISTS (SELECT 1 FROM etl_files g "
            "  WHERE g.run_id = r.run_id AND g.path = r.file AND g.sha256 = f.sha256)) AS stored "
            "FROM etl_files f ORDER BY run_id, id"
        ).fetchall()
        by_run: dict[int, dict[str, dict]] = {}
        for run_id, path, _sha, status, read, *rest in ledger:
            counts = dict(zip(("loaded", "duplicate", "updated", "rejected", "blank", "set_aside", "zeroed"), rest[:7]))
            counts.update(read=read, status=status)
            latest, stored = rest[7], rest[8]
            where = f"etl_files run {run_id} {path}"
            assert_file_counts(counts, where)
            if status == "unrecognized":
                assert read == 0, where
            # One copy of a reject per (file content, line), made by the content's
            # latest evaluation (earlier ones may have rejected rows that load now).
            if latest and status != "unrecognized":
                assert stored == counts["rejected"], f"{where}: rejected {counts['rejected']}, etl_rejects holds {stored}"
            by_run.setdefault(run_id, {})[path] = counts
        orphans = conn.execute(
            "SELECT r.run_id, r.file FROM etl_rejects r WHERE NOT EXISTS "
            "(SELECT 1 FROM etl_files f WHERE f.run_id = r.run_id AND f.path = r.file AND f.status <> 'unrecognized') LIMIT 5"
        ).fetchall()
        assert not orphans, f"rejects of no recognised file of their run: {orphans}"
        twice = conn.execute(
            "SELECT f.sha256, r.line FROM etl_rejects r JOIN etl_files f ON f.run_id = r.run_id AND f.path = r.file "
            "GROUP BY f.sha256, r.line HAVING count(*) > 1 LIMIT 5"
        ).fetchall()
        assert not twice, f"rejects stored twice for one (file content, line): {twice}"
    if summary is not None and summary.get("run_id") is not None:
        recorded = by_run.get(summary["run_id"], {})
        for f in summary["files"]:
            if f["status"] == "skipped":
                continue
            assert f["path"] in recorded, f"{f['path']} of run {summary['run_id']} is not in etl_files"
            assert {k: recorded[f["path"]][k] for k in COUNTERS} == {k: f[k] for k in COUNTERS}, f["path"]


# Variables of the caller's environment that would change what a test means.
_ETL_ENV_DROPPED = ("DATA_DIR", "ETL_MAX_REJECT_RATIO", "ETL_RANK_TOLERANCE", "ETL_DB_WAIT", "LOG_CONFIG")


class Etl:
    """Runs coinflow-etl against one database, in a scratch working directory (so no
    .env or log/ of the repository is involved)."""

    def __init__(self, binary: pathlib.Path, database_url: str | None, workdir: pathlib.Path):
        self.binary = binary
        self.database_url = database_url
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._summaries = 0

    def env(self, extra: dict[str, str | None] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _ETL_ENV_DROPPED}
        env.pop("DATABASE_URL", None)
        if self.database_url is not None:
            env["DATABASE_URL"] = self.database_url
        env.setdefault("LOG_LEVEL", "info")
        env["ETL_DB_WAIT"] = "20s"
        for key, value in (extra or {}).items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def __call__(self, *args: str | os.PathLike, env: dict | None = None, timeout: float = 600) -> Result:
        argv = [str(self.binary), *map(str, args)]
        proc = subprocess.run(
            argv,
            cwd=self.workdir,
            env=self.env(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
        )
        return Result(argv, proc.returncode, proc.stdout, proc.stderr)

    def run(self, data_dir: pathlib.Path, *args: str | os.PathLike, **kwargs: Any) -> Result:
        """`coinflow-etl run --data-dir DIR --summary FILE ARGS…`, with the summary parsed."""
        self._summaries += 1
        summary_path = self.workdir / f"summary-{self._summaries}.json"
        result = self("run", "--data-dir", data_dir, "--summary", summary_path, *args, **kwargs)
        if summary_path.exists():
            result.summary = json.loads(summary_path.read_text())
        self.assert_rows_accounted(result.summary)
        return result

    def assert_rows_accounted(self, summary: dict | None = None) -> None:
        """The row identity for a run's summary and every file of the ledger (when the
        database is reachable: some tests run the ETL against none)."""
        url = self.database_url
        if url is not None:
            try:
                psycopg.connect(url, autocommit=True, connect_timeout=3).close()
            except psycopg.Error:
                url = None
        if url is not None:
            with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
                migrated = conn.execute("SELECT to_regclass('etl_files') IS NOT NULL").fetchone()[0]
            url = url if migrated else None
        assert_rows_accounted(summary, url)

    def start(self, *args: str | os.PathLike, env: dict | None = None) -> subprocess.Popen:
        """Starts the ETL without waiting; stdout and stderr go to files in the workdir."""
        tag = uuid.uuid4().hex[:8]
        out = open(self.workdir / f"etl-{tag}.out", "w+")
        err = open(self.workdir / f"etl-{tag}.err", "w+")
        proc = subprocess.Popen(
            [str(self.binary), *map(str, args)],
            cwd=self.workdir,
            env=self.env(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            text=True,
        )
        proc.out_file, proc.err_file = out, err  # type: ignore[attr-defined]
        return proc

    @staticmethod
    def finish(proc: subprocess.Popen, timeout: float = 300) -> Result:
        """Waits for a process from start() and collects its output."""
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        outputs = []
        for f in (proc.out_file, proc.err_file):  # type: ignore[attr-defined]
            f.seek(0)
            outputs.append(f.read())
            f.close()
        return Result([str(a) for a in proc.args], code, outputs[0], outputs[1])


@pytest.fixture(scope="session")
def etl_bin() -> pathlib.Path:
    return _binary("COINFLOW_ETL_BIN", "coinflow-etl")


@pytest.fixture(scope="session")
def api_bin() -> pathlib.Path:
    return _binary("COINFLOW_API_BIN", "coinflow-api")


@pytest.fixture
def etl(etl_bin: pathlib.Path, db: Database, tmp_path: pathlib.Path) -> Iterator[Etl]:
    """The ETL binary pointed at this test's fresh database; after the test, every file
    of every run it made is checked for the row identity (runs started without a
    summary included)."""
    runner = Etl(etl_bin, db.url, tmp_path / "work")
    yield runner
    runner.assert_rows_accounted()


@pytest.fixture
def data_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


# ------------------------------------------------------------------------------------
# The API binary.


class Api:
    """A running API: its base URL and request helpers."""

    def __init__(self, base_url: str, process: subprocess.Popen | None = None, log: pathlib.Path | None = None):
        self.base_url = base_url.rstrip("/")
        self.process = process
        self.log = log
        self.session = requests.Session()

    def url(self, path: str) -> str:
        return path if path.startswith("http") else self.base_url + path

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return self.session.get(self.url(path), **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return self.session.post(self.url(path), **kwargs)

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return self.session.request(method, self.url(path), **kwargs)

    def log_tail(self) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        self.session.close()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_api(binary: pathlib.Path, database_url: str, workdir: pathlib.Path, **env: str) -> Api:
    """Starts coinflow-api on a free port and waits until /health/live answers 200."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if k not in ("API_WRITE_TOKEN", "TASK_OUTPUT_DIR", "LOG_CONFIG")}
    full_env.update(
        DATABASE_URL=database_url,
        API_ADDRESS="127.0.0.1",
        API_PORT=str(port),
        CURSOR_SECRET="black-box-test-cursor-secret-of-32-bytes-or-more",
        LOG_LEVEL=os.environ.get("LOG_LEVEL", "info"),
    )
    full_env.update(env)
    log = workdir / f"api-{port}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(binary)], cwd=workdir, env=full_env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    api = Api(f"http://127.0.0.1:{port}", proc, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"coinflow-api exited with {proc.returncode} at start-up:\n{api.log_tail()}")
        try:
            if api.get("/health/live", timeout=2).status_code == 200:
                return api
        except requests.RequestException:
            pass
        time.sleep(0.2)
    api.stop()
    raise AssertionError(f"coinflow-api did not answer /health/live within 60 s:\n{api.log_tail()}")


@pytest.fixture
def api_factory(api_bin: pathlib.Path, tmp_path: pathlib.Path) -> Iterator:
    """start(database_url, **env) -> Api; every API started is stopped after the test."""
    started: list[Api] = []

    def start(database_url: str, **env: str) -> Api:
        api = start_api(api_bin, database_url, tmp_path / "api", **env)
        started.append(api)
        return api

    yield start
    for api in started:
        api.stop()


# ------------------------------------------------------------------------------------
# A private PostgreSQL cluster, for tests that stop or delay the database.


def pg_bindir() -> pathlib.Path:
    """The directory of initdb and pg_ctl, found as scripts/lib/pg.sh finds it."""
    candidates = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(pathlib.Path(os.environ["PG_BINDIR"]))
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(pathlib.Path(initdb).parent)
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: [int(x) for x in p.split("/")[-2].split(".") if x.isdigit()],
    )
    candidates += [pathlib.Path(p) for p in reversed(versions)]
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists():
            return c
    pytest.fail(
        "own_cluster: PostgreSQL server binaries (initdb, pg_ctl) not found; install PostgreSQL or set PG_BINDIR",
        pytrace=False,
    )


def _cluster_user() -> str | None:
    """None when we are not root; otherwise an unprivileged user for initdb."""
    if os.geteuid() != 0:
        return None
    for user in ("postgres", "coinflow-pg"):
        if subprocess.run(["id", user], capture_output=True).returncode == 0:
            return user
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "coinflow-pg"], check=True
    )
    return "coinflow-pg"


class PgCluster:
    """A throwaway cluster: initdb'ed on creation, started and stopped at will, listening
    on 127.0.0.1 at a port reserved up front (so a client can be pointed at it before the
    server exists), unix socket inside its own directory, trust authentication."""

    def __init__(self) -> None:
        self.bindir = pg_bindir()
        self.user = _cluster_user()
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="coinflow-pytest-pg."))
        os.chmod(self.dir, 0o755)
        self.data = self.dir / "data"
        self.sock = self.dir / "sock"
        self.data.mkdir()
        self.sock.mkdir()
        if self.user:
            shutil.chown(self.dir, self.user)
            shutil.chown(self.data, self.user)
            shutil.chown(self.sock, self.user)
        self.port = free_port()
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"
        self._as(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "--encoding=UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip

    def _as(self, *argv: str) -> subprocess.CompletedProcess:
        cmd = list(argv) if self.user is None else ["runuser", "-u", self.user, "--", *argv]
        proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def start(self) -> None:
        opts = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sock} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._as(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "server.log"),
            "-w", "-t", "60", "-o", opts, "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        if self.running:
            self._as(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def remove(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def own_cluster() -> Iterator[PgCluster]:
    """A private PostgreSQL cluster, initialised but NOT started (call .start()); its URL
    and port are fixed up front. Stopped and removed after the test."""
    cluster = PgCluster()
    try:
        yield cluster
    finally:
        cluster.remove()


# ------------------------------------------------------------------------------------
# Canonical CSV fixtures (the headers `coinflow-etl generate` writes).

COINS_CSV = """id,symbol,name,cmc_id
bitcoin,BTC,Bitcoin,1
ethereum,ETH,Ethereum,1027
tether,USDT,Tether,825
"""

MARKETS_CSV = """coin_id,timestamp,price,market_cap,volume_24h
bitcoin,2024-01-01T00:00:00Z,42000.5,820000000000,15000000000
bitcoin,2024-01-01T01:00:00Z,42100.25,822000000000,15100000000
bitcoin,2024-01-02T00:00:00Z,43000,840000000000,16000000000
ethereum,2024-01-01T00:00:00Z,2300.1,276000000000,8000000000
ethereum,2024-01-01T01:00:00Z,2310.9,277000000000,8100000000
tether,2024-01-01T00:00:00Z,1.0001,91000000000,30000000000
"""

RANKINGS_CSV = """coin_id,timestamp,rank,volume_24h
tether,2023-12-31T23:59:50Z,1,30000000000
bitcoin,2023-12-31T23:59:50Z,2,15000000000
ethereum,2023-12-31T23:59:50Z,3,8000000000
"""

TICKERS_CSV = """coin_id,exchange,base,target
bitcoin,binance,BTC,USDT
bitcoin,kraken,BTC,USD
ethereum,binance,ETH,USDT
tether,kraken,USDT,USD
"""

PEOPLE_CSV = """person_id,first_name,last_name,email,date_added
1,Ada,Lovelace,ada@example.com,2023-06-01
2,Alan,Turing,alan@example.com,2023-07-15
3,Grace,Hopper,grace@example.com,2023-08-20
"""

TRADES_CSV = """person_id,timestamp,coin_id,side,quantity,price
1,2024-01-01T00:30:00Z,bitcoin,buy,0.5,42050
1,2024-01-01T02:00:00Z,bitcoin,sell,0.1,42200
2,2024-01-01T01:10:00Z,ethereum,buy,3,2305
"""

SAMPLE = {
    "coins.csv": COINS_CSV,
    "markets.csv": MARKETS_CSV,
    "rankings.csv": RANKINGS_CSV,
    "tickers.csv": TICKERS_CSV,
    "people.csv": PEOPLE_CSV,
    "trades.csv": TRADES_CSV,
}


def write_sample(directory: pathlib.Path, files: dict[str, str] | None = None) -> pathlib.Path:
    for name, text in (files or SAMPLE).items():
        write(directory / name, text)
    return directory


def data_rows(text: str) -> int:
    """Data rows of a fixture (lines after the header)."""
    return len([line for line in text.splitlines()[1:] if line.strip()])
