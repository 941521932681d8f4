"""issue 14 §6: one `serve` per home, and an operator's mistakes — a second serve, a busy
--listen or --metrics-listen, an output file in a missing directory — end in one `error:` line
and a distinct exit status, never a traceback. The real CLI in child processes."""

from __future__ import annotations

import asyncio
import pathlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from node.answer.worker_client import WorkerAnswerer
from node.errors import AddressInUse
from node.home import NodeHome
from node.runtime import NodeRuntime
from tests.federation_helpers import HUZHOU, init_home

IN_USE, CANNOT_WRITE = 7, 8


def creditnode(*args: object, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_serve(home: pathlib.Path, ready: pathlib.Path) -> subprocess.Popen[str]:
    """`creditnode serve` on a free port, returned once it serves (its --ready-file is written)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "node.cli", "serve", "--home", str(home),
         "--listen", "127.0.0.1:0", "--ready-file", str(ready)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(f"serve did not start:\n{out}\n{err}")
        time.sleep(0.05)
    return proc


def assert_one_error_line(result: subprocess.CompletedProcess[str], status: int, text: str) -> None:
    assert result.returncode == status, (result.stdout, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and text in errors[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.fixture
def home(tmp_path: pathlib.Path) -> pathlib.Path:
    return init_home(tmp_path, HUZHOU, "湖州")


@pytest.fixture
def listening() -> Iterator[int]:
    """A port another process (here: this one) listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_a_second_serve_on_the_same_home_exits_and_a_killed_one_frees_it(
    home: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    first = start_serve(home, tmp_path / "first.ready")
    try:
        second = creditnode("serve", "--home", home, "--listen", "127.0.0.1:0")
        assert_one_error_line(second, IN_USE, f"{home} is already served by process {first.pid}")
        assert first.poll() is None  # the first one serves on
    finally:
        first.send_signal(signal.SIGKILL)  # no chance to clean up: the kernel drops the lock
        first.wait(timeout=30)
    assert (home / "data" / "serve.lock").exists()  # left behind, and no obstacle
    third = start_serve(home, tmp_path / "third.ready")
    third.send_signal(signal.SIGTERM)
    out, _ = third.communicate(timeout=60)
    assert third.returncode == 0 and "stopping" in out


@pytest.mark.parametrize("option", ["--listen", "--metrics-listen"])
def test_a_busy_port_is_one_line_and_status_7(
    home: pathlib.Path, listening: int, option: str
) -> None:
    address = f"127.0.0.1:{listening}"
    other = ["--listen", "127.0.0.1:0"] if option == "--metrics-listen" else []
    result = creditnode("serve", "--home", home, option, address, *other)
    assert_one_error_line(result, IN_USE, f"{address}: another process listens there")


async def test_a_start_that_fails_stops_what_it_had_started(
    home: pathlib.Path, listening: int
) -> None:
    """In-process (the demo's and the tests' way): the log, the answering worker and the tasks
    a failed start began are ended, not left to the garbage collector after the loop is gone,
    and the same home then serves."""
    runtime = NodeRuntime(NodeHome(home))
    with pytest.raises(AddressInUse, match="another process listens there"):
        await runtime.start(f"127.0.0.1:{listening}")
    assert runtime.server is None and not runtime.sequencer.running
    assert isinstance(runtime.answerer, WorkerAnswerer) and runtime.answerer.pid is not None
    assert not pathlib.Path(f"/proc/{runtime.answerer.pid}").exists()  # ended and reaped
    assert asyncio.all_tasks() == {asyncio.current_task()}
    again = NodeRuntime(NodeHome(home))
    await again.start("127.0.0.1:0")
    try:
        assert again.server is not None and again.sequencer.running
    finally:
        await again.stop()


def test_a_port_beyond_65535_is_a_usage_error(home: pathlib.Path) -> None:
    """gRPC would have listened on 99999 - 65536 = 34463 without a word."""
    result = creditnode("serve", "--home", home, "--listen", "127.0.0.1:99999")
    assert_one_error_line(result, 2, "use HOST:PORT with a port up to 65535")


@pytest.mark.parametrize(
    "command",
    [
        ["gen-data", "--city", HUZHOU, "--subjects", "3", "--out"],
        ["log", "export", "--out"],
        ["serve", "--listen", "127.0.0.1:0", "--ready-file"],
        ["zone", "sign", "--zone", "hjjw", "--out"],
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_an_output_file_in_a_missing_directory_is_one_line_and_status_8(
    home: pathlib.Path, tmp_path: pathlib.Path, command: list[str]
) -> None:
    missing = tmp_path / "no-such-dir"
    where = {"zone": ["--dir", tmp_path], "gen-data": []}.get(command[0], ["--home", home])
    if command[0] == "zone":
        assert creditnode("zone", "init", "--zone", "hjjw", "--dir", tmp_path).returncode == 0
    result = creditnode(*command, missing / "out", *where)
    assert_one_error_line(result, CANNOT_WRITE, f"the directory {missing} does not exist")
    assert not missing.exists()


def test_a_node_toml_that_is_not_utf8_is_a_config_error(home: pathlib.Path) -> None:
    """Once an unexpected UnicodeDecodeError out of the TOML reader: now named as what it is."""
    (home / "node.toml").write_bytes(b"\xff\xfe not toml")
    result = creditnode("identity", "export", "--home", home)
    assert_one_error_line(result, 6, "node.toml: not UTF-8 text (byte 0); TOML files are UTF-8")
