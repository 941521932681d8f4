"""Ingest of 双公示 penalty exports (`shuanggongshi-cf-csv`) of 100,000 and 1,000,000 records:
`creditnode ingest` end to end on a fresh SQLite home, beside a baseline measured in the same
run, with the peak RSS of each (issue 11 Must show: streamed, memory must not grow with the
file).

Baseline: the same CSV read by `csv.reader` and its cells inserted by plain sqlite3 executemany
(a generator, one transaction) into a table like penalty_records (same columns, primary key
and indexes, WAL, synchronous=FULL): what the bytes cost with no checking at all. Each path
runs in a fresh child process that reports its wall and CPU time and its peak RSS (VmHWM);
interpreter start-up is not counted, the CLI's own (config, keys, migrations) is.
`PENALTY_BENCH_RUNS` (default 3) runs of each, `PENALTY_BENCH_ROWS` (default
"100000,1000000") the sizes, `PENALTY_BENCH_JOBS` (default "1,auto") the settings of
`creditnode ingest --jobs` measured (auto: its default, reader processes on every CPU, at
most 4; docs/adr/0015).
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json
import os
import pathlib
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

CITY = "cn-330500"
AS_OF = dt.date(2030, 6, 1)
FORMAT = "shuanggongshi-cf-csv"
_BASELINE_SCHEMA = """
CREATE TABLE penalty_records (
    record_id VARCHAR NOT NULL PRIMARY KEY, id_type SMALLINT NOT NULL, subject_id VARCHAR NOT NULL,
    subject_name TEXT NOT NULL, severity SMALLINT NOT NULL, decided_on DATE NOT NULL,
    flag VARCHAR NOT NULL, content TEXT NOT NULL, status SMALLINT NOT NULL, closed_at DATETIME,
    close_reason TEXT, created_at DATETIME NOT NULL, kind SMALLINT NOT NULL DEFAULT 1,
    publicity_ends_on DATE);
CREATE INDEX ix_penalty_records_subject ON penalty_records (subject_id, id_type);
CREATE INDEX ix_penalty_records_status ON penalty_records (status, decided_on);
CREATE INDEX ix_penalty_records_kind ON penalty_records (kind, status);
"""


def _write_export(path: pathlib.Path, rows: int, seed: int) -> int:
    """A valid export of `rows` generated penalties, written a chunk at a time."""
    from adapters.shuanggongshi import PENALTY_FORMATS
    from node.gendata import generate_penalties

    adapter = PENALTY_FORMATS[FORMAT]
    records = generate_penalties(CITY, rows, seed, AS_OF)
    with path.open("wb") as out:
        first = True
        while True:
            batch = [r for _, r in zip(range(20_000), records, strict=False)]
            if not batch:
                break
            data = adapter.render(batch)
            out.write(data if first else data.split(b"\r\n", 1)[1])
            first = False
    return path.stat().st_size


# --- children: each measures itself -----------------------------------------------------------


def _child_ingest(export: pathlib.Path, home: pathlib.Path, jobs: str) -> float:
    from node.cli import main as cli

    started = time.perf_counter()
    cli.main(
        ["ingest", "--format", FORMAT, str(export), "--home", str(home)]
        + (["--jobs", jobs] if jobs != "auto" else []),
        prog_name="creditnode",
        standalone_mode=False,
    )
    return time.perf_counter() - started


def _baseline_rows(export: pathlib.Path, now: str) -> Iterator[tuple[Any, ...]]:
    with export.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        at = {name: i for i, name in enumerate(header)}
        name, uscc, person = at["CF_XDR_MC"], at["CF_XDR_SHXYM"], at["CF_XDR_ZJHM"]
        number, decided, ends = at["CF_WSH"], at["CF_JDRQ"], at["CF_GSJZQ"]
        category = at["CF_CFLB"]
        for row in reader:
            yield (
                f"{row[uscc] or row[person]}|{row[number]}", 2 if row[person] else 1,
                row[uscc] or row[person], row[name], 2, row[decided],
                "ADMINISTRATIVE_PENALTY", row[category], 1, None, None, now, 1, row[ends],
            )  # fmt: skip


def _child_baseline(export: pathlib.Path, database: pathlib.Path) -> float:
    conn = sqlite3.connect(database, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.executescript(_BASELINE_SCHEMA)
    started = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany(
        f"INSERT INTO penalty_records VALUES ({', '.join('?' * 14)})",
        _baseline_rows(export, dt.datetime.now(dt.UTC).isoformat()),
    )
    conn.execute("COMMIT")
    seconds = time.perf_counter() - started
    conn.close()
    return seconds


def _peak_rss_mib() -> float:
    """This process's peak RSS. Not ru_maxrss: Linux carries that over from the parent
    across exec, so a child would report the bench's own peak."""
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def _cpu_seconds() -> float:
    """CPU time of this process and of its children that have ended (the reader processes
    of an import in parts)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def _child(argv: list[str]) -> None:
    path, target = pathlib.Path(argv[1]), pathlib.Path(argv[2])
    if argv[0] == "export":
        print(_write_export(path, int(argv[2]), seed=2026))
        return
    cpu = _cpu_seconds()
    if argv[0] == "ingest":
        seconds = _child_ingest(path, target, argv[3])
    else:
        seconds = _child_baseline(path, target)
    cpu = _cpu_seconds() - cpu
    print(json.dumps({"seconds": seconds, "cpu": cpu, "peak_mib": _peak_rss_mib()}))


def _measure(
    which: str, export: pathlib.Path, target: pathlib.Path, jobs: str = "1"
) -> dict[str, float]:
    """The child's own figures, and `tree_mib`: the highest sum of the resident memory of
    it and its descendants (the reader processes), sampled every 20 ms."""
    measured: dict[str, float] = {}
    tree_peak = 0
    with subprocess.Popen(
        _child_command(which, export, target, jobs),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=_child_env(),
    ) as child:
        while child.poll() is None:
            tree_peak = max(tree_peak, _tree_rss_kib(child.pid))
            time.sleep(0.02)
        assert child.stdout is not None
        out = child.stdout.read().strip().splitlines()
        if child.returncode != 0 or not out:
            raise RuntimeError(f"{which} child failed with exit code {child.returncode}")
        measured = json.loads(out[-1])
    measured["tree_mib"] = max(tree_peak / 1024, measured["peak_mib"])
    return measured


def _tree_rss_kib(pid: int) -> int:
    """VmRSS of `pid` and its descendants, now (0 for any that has just ended)."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        proc = pathlib.Path(f"/proc/{current}")
        try:
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            children = (proc / "task" / str(current) / "children").read_text().split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        pending += [int(c) for c in children]
    return total


def _child_command(which: str, export: pathlib.Path, target: pathlib.Path, *rest: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bench.penalty_ingest_bench",
        "--child",
        which,
        str(export),
        str(target),
        *rest,
    ]


def _child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(pathlib.Path(__file__).resolve().parents[1])}


def _run_child(which: str, export: pathlib.Path, target: pathlib.Path) -> str:
    done = subprocess.run(
        _child_command(which, export, target),
        check=True,
        capture_output=True,
        text=True,
        env=_child_env(),
    )
    return done.stdout.strip().splitlines()[-1]


# --- the run ----------------------------------------------------------------------------------


def _new_home(root: pathlib.Path, name: str) -> pathlib.Path:
    from node.cli import main as cli

    home = root / name
    with contextlib.redirect_stdout(io.StringIO()):
        cli.main(
            ["init", "--node-id", CITY, "--name", "湖州", "--home", str(home)],
            prog_name="creditnode",
            standalone_mode=False,
        )
    return home


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):>10,.0f} ({min(values):,.0f}-{max(values):,.0f})"


def run(sizes: list[int], runs: int, jobs: list[str]) -> Iterator[str]:
    """The table's lines, a size's lines as soon as it is measured: one per setting of
    `creditnode ingest --jobs` ("auto": the command's default), the runs of each setting and
    of the baseline taking turns."""
    yield from [
        f"{FORMAT} ingest vs baseline (csv.reader + sqlite3 executemany), SQLite WAL "
        f"synchronous=FULL; median (min-max) of {runs} runs, each in a fresh process",
        "ratio: of the median rows/s (wall clock); cpu: of the median CPU seconds (the "
        "process and its reader processes; less moved by other work on the machine)",
        "RSS: the highest peak of the runs, of the process alone and of it with its reader "
        "processes (their sum, sampled every 20 ms)",
        f"{'rows':>9} {'MB':>6} {'jobs':>5} {'ingest rows/s':>27} {'baseline rows/s':>27} "
        f"{'ratio':>6} {'cpu':>6} {'ingest RSS MiB':>15} {'with readers':>13} "
        f"{'baseline RSS MiB':>17}",
    ]
    with tempfile.TemporaryDirectory(prefix="penalty-bench-") as tmp:
        root = pathlib.Path(tmp)
        for rows in sizes:
            export = root / f"cf-{rows}.csv"
            _run_child("export", export, pathlib.Path(str(rows)))
            size = export.stat().st_size
            ingest: dict[str, list[dict[str, float]]] = {j: [] for j in jobs}
            base: list[dict[str, float]] = []
            for n in range(runs):
                for j in jobs:
                    home = _new_home(root, f"home-{rows}-{j}-{n}")
                    ingest[j].append(_measure("ingest", export, home, j))
                    shutil.rmtree(home)
                base.append(_measure("baseline", export, root / f"base-{rows}-{n}.db"))
                (root / f"base-{rows}-{n}.db").unlink()
            base_rate = [rows / m["seconds"] for m in base]
            for j in jobs:
                rate = [rows / m["seconds"] for m in ingest[j]]
                ratio = statistics.median(rate) / statistics.median(base_rate)
                cpu_ratio = statistics.median(m["cpu"] for m in base) / statistics.median(
                    m["cpu"] for m in ingest[j]
                )
                yield (
                    f"{rows:>9,} {size / 1e6:>6.0f} {j:>5} {_spread(rate):>27} "
                    f"{_spread(base_rate):>27} {ratio:>5.2f}x {cpu_ratio:>5.2f}x "
                    f"{max(m['peak_mib'] for m in ingest[j]):>15.0f} "
                    f"{max(m['tree_mib'] for m in ingest[j]):>13.0f} "
                    f"{max(m['peak_mib'] for m in base):>17.0f}"
                )


def main() -> None:
    sizes = [int(s) for s in os.environ.get("PENALTY_BENCH_ROWS", "100000,1000000").split(",")]
    jobs = os.environ.get("PENALTY_BENCH_JOBS", "1,auto").split(",")
    for text in run(sizes, int(os.environ.get("PENALTY_BENCH_RUNS", "3")), jobs):
        print(text, flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _child(sys.argv[2:])
    else:
        main()
