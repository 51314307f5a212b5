"""Black-box checks of issue 14 (a hostile world) on the built binaries: a database of
the wrong encoding, unsafe CURSOR_SECRET values, a summary file that cannot be written
after a committed run."""

from __future__ import annotations

import os
import pathlib
import subprocess
from typing import Iterator

import psycopg
import pytest
from psycopg import sql

from conftest import SAMPLE, Database, Etl, drop_database, free_port, with_database, write_sample


@pytest.fixture
def sql_ascii_db(server_url: str) -> Iterator[Database]:
    """A database created as a plain `initdb` without a locale would make it."""
    name = f"coinflow_ascii_{os.getpid()}_{free_port()}"
    with psycopg.connect(server_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} ENCODING 'SQL_ASCII' TEMPLATE template0").format(sql.Identifier(name))
        )
    database = Database(with_database(server_url, name), name)
    try:
        yield database
    finally:
        drop_database(server_url, database)


def run_api_until_exit(api_bin: pathlib.Path, workdir: pathlib.Path, **env: str) -> subprocess.CompletedProcess:
    """Starts coinflow-api with `env` and expects it to stop by itself (a refused start)."""
    workdir.mkdir(parents=True, exist_ok=True)
    full_env = {k: v for k, v in os.environ.items() if k not in ("API_WRITE_TOKEN", "TASK_OUTPUT_DIR", "CURSOR_SECRET")}
    full_env.update(API_ADDRESS="127.0.0.1", API_PORT=str(free_port()), LOG_LEVEL="info")
    full_env.update(env)
    return subprocess.run(
        [str(api_bin)],
        cwd=workdir,
        env=full_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=60,
    )


def test_etl_refuses_a_database_that_is_not_utf8(etl_bin, sql_ascii_db: Database, tmp_path, data_dir):
    write_sample(data_dir)
    result = Etl(etl_bin, sql_ascii_db.url, tmp_path / "work").run(data_dir)
    assert result.code == 1, result
    assert "SQL_ASCII" in result.stderr and "ENCODING 'UTF8' TEMPLATE template0" in result.stderr, result
    tables = sql_ascii_db.scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
    assert tables == 0, "nothing is created in a refused database"


def test_api_refuses_a_database_that_is_not_utf8(api_bin, sql_ascii_db: Database, tmp_path):
    proc = run_api_until_exit(api_bin, tmp_path / "api", DATABASE_URL=sql_ascii_db.url)
    assert proc.returncode != 0, proc
    assert "SQL_ASCII" in proc.stderr and "CREATE DATABASE" in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    "secret, says",
    [("change-me-to-a-long-random-string", "placeholder"), ("too-short-a-secret", "at least 32 bytes")],
)
def test_api_refuses_an_unsafe_cursor_secret(api_bin, db: Database, tmp_path, secret: str, says: str):
    proc = run_api_until_exit(api_bin, tmp_path / "api", DATABASE_URL=db.url, CURSOR_SECRET=secret)
    assert proc.returncode != 0, proc
    assert "CURSOR_SECRET" in proc.stderr and says in proc.stderr, proc.stderr
    assert secret not in proc.stderr, "the secret is never echoed"


def test_api_without_cursor_secret_starts_and_warns(api_factory, db: Database):
    api = api_factory(db.url, CURSOR_SECRET="")
    assert api.get("/health/live").status_code == 200
    assert api.log is not None
    assert "cursors will not survive a restart" in api.log.read_text(errors="replace")


def test_an_unwritable_summary_after_a_committed_run_exits_6(etl: Etl, db: Database, data_dir: pathlib.Path):
    write_sample(data_dir)
    result = etl("run", "--data-dir", data_dir, "--summary", data_dir / "no-such-dir" / "run.json")
    assert result.code == 6, result
    assert "committed with status ok" in result.stderr, result
    assert db.scalar("SELECT status FROM etl_runs ORDER BY id DESC LIMIT 1") == "ok"
    assert db.count("market") > 0
    assert set(SAMPLE) <= {r[0] for r in db.rows("SELECT path FROM etl_files WHERE status = 'loaded'")}
