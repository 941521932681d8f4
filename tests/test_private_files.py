"""Files that hold resident ids or the exchange log are private to the node's user whatever
existed before (issue 9 §6): data/ and keys/ 0700, the SQLite files 0600, a log export 0600."""

from __future__ import annotations

import os
import pathlib
import stat
from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result

from node.cli import main
from node.store import Store

pytestmark = pytest.mark.skipif(os.name != "posix", reason="mode bits are POSIX")

GOOD = pathlib.Path(__file__).parent / "vectors" / "imports" / "huzhou-csv" / "good.csv"


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _mode(path: pathlib.Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The common 022: without our care, new files would be 0644 and directories 0755."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _init(home: pathlib.Path, *extra: str) -> Result:
    return _run("init", "--node-id", "cn-330500", "--name", "湖州", "--home", str(home), *extra)


@pytest.mark.parametrize("force", [False, True], ids=["fresh-identity", "init-force"])
def test_init_narrows_existing_data_and_keys_directories(
    tmp_path: pathlib.Path, force: bool
) -> None:
    """issue 9 §6: init makes an existing data/ (and keys/) 0700, whatever mode it had."""
    home = tmp_path / "home"
    if force:
        assert _init(home).exit_code == 0
    for name in ("data", "keys"):
        (home / name).mkdir(parents=True, exist_ok=True)
        (home / name).chmod(0o755)
    result = _init(home, *(["--force"] if force else []))
    assert result.exit_code == 0, result.output
    assert _mode(home / "data") == 0o700
    assert _mode(home / "keys") == 0o700


def test_init_refuses_a_data_path_that_is_not_a_directory(tmp_path: pathlib.Path) -> None:
    """issue 9 §6: when data/ cannot be made a private directory, init says so in one line
    (no traceback) and writes no identity."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "data").write_text("not a directory")
    result = _init(home)
    assert result.exit_code == 1
    assert f"{home / 'data'} exists and is not a directory" in result.stderr
    assert not (home / "node.toml").exists()


def test_new_sqlite_store_files_are_0600(tmp_path: pathlib.Path) -> None:
    """issue 9 §6: the database, its -wal and its -shm are created 0600 under umask 022."""
    db = tmp_path / "node.db"
    with Store.open(f"sqlite:///{db}") as store:
        store.migrate()  # writes: the -wal and -shm files exist while the store is open
        files = [db, db.with_name("node.db-wal"), db.with_name("node.db-shm")]
        assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}


def test_existing_sqlite_files_are_narrowed_on_open(tmp_path: pathlib.Path) -> None:
    """issue 9 §6: files a previous version left 0644 are 0600 once the store opens them."""
    db = tmp_path / "node.db"
    Store.open(f"sqlite:///{db}").close()
    files = [db, db.with_name("node.db-wal"), db.with_name("node.db-shm")]
    for f in files:
        f.touch()
        f.chmod(0o644)
    with Store.open(f"sqlite:///{db}"):
        assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}


def test_log_export_is_written_0600_even_over_a_readable_file(tmp_path: pathlib.Path) -> None:
    """issue 9 §6: `creditnode log export` leaves its output 0600, also when the file existed
    before with 0644."""
    home = tmp_path / "home"
    assert _init(home).exit_code == 0
    assert _run("ingest", "--format", "huzhou-csv", str(GOOD), "--home", str(home)).exit_code == 0
    out = tmp_path / "log.json"
    out.write_text("old")
    out.chmod(0o644)
    result = _run("log", "export", "--home", str(home), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert _mode(out) == 0o600
    assert out.read_text(encoding="utf-8").startswith("{")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left
