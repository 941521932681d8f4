"""`make demo`: a small federation on loopback, set up and run the way operators do it.

1. Five city nodes (Huzhou, Jiaxing, Hangzhou, Ningbo, Shanghai) are initialised under demo/,
   each generates and ingests its synthetic export; four zone coordinators sign trust lists
   that every member pins and installs (devtools.federation).
2. Each node runs `creditnode serve` in its own process on a loopback port.
3. A script of queries — granted, refused (not in zone, purpose not agreed, natural person not
   allowed) and not found — runs through `creditnode query`, and is printed as a table.
4. The provincial Green Loan Link job (cn-330000, role green-loan-sync on the yrd list)
   follows Huzhou's signed changefeed into its own SQLite sink (`creditnode greenloan-sync`).
5. Credit repair: a penalty flags a company, Jiaxing receives the flagged result, Huzhou's
   local platform repairs the record over the auditor service's HTTP API (an operator's token;
   `creditnode repair` does the same on the node's machine); Jiaxing's node applies the signed
   revocation notice and the sync job drops the flagged result.
6. Huzhou's auditor page: its URL and an auditor's token are printed; `--keep` (`make demo
   KEEP=1`) keeps the federation running until Ctrl-C, so that a person can open it.
7. Huzhou's exchange log is verified offline; every node process is stopped before exit.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import json
import os
import pathlib
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator

import click
import sqlalchemy as sa

from devtools.federation import CITIES, ZONES, Federation, build
from node import model, repair
from node.clock import SYSTEM
from node.home import NodeHome
from node.store import Store
from node.store.schema import CreditResultRow

DEMO = pathlib.Path("demo")
HUZHOU, JIAXING, HANGZHOU, NINGBO, SHANGHAI = (
    "cn-330500",
    "cn-330400",
    "cn-330100",
    "cn-330200",
    "cn-310000",
)
PROVINCE = "cn-330000"  # the Zhejiang Green Loan Link's sync job (浙江省绿贷通)
CREDITNODE = [sys.executable, "-m", "node.cli"]
AUDITOR, PLATFORM = "demo-auditor", "local-platform"  # Huzhou's auditor service tokens


def enable_auditor_service(fed: Federation) -> dict[str, str]:
    """Huzhou serves its auditor page on a free loopback port; an auditor of every zone and
    the local platform (an operator) get tokens. Name -> token."""
    home = NodeHome(fed.home(HUZHOU))
    with home.config_file.open("a", encoding="utf-8") as f:
        f.write('\n[auditor_web]\nenabled = true\nlisten = "127.0.0.1:0"\n')
    tokens = {}
    for name, role in ((AUDITOR, "auditor"), (PLATFORM, "operator")):
        done = subprocess.run(
            [
                *CREDITNODE,
                *("auditor", "add", name, "--role", role, "--zone", "*", "--json"),
                *("--home", str(fed.home(HUZHOU))),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        tokens[name] = json.loads(done.stdout)["token"]
    return tokens


def auditor_page(fed: Federation) -> str:
    """The auditor page's URL, as Huzhou's `serve` printed it (its port was free, chosen then)."""
    for line in (fed.root / f"{HUZHOU}.serve.log").read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("auditor page: "):
            return line.split("auditor page: ", 1)[1].strip()
    raise SystemExit(f"demo: Huzhou printed no auditor page; see {fed.root}/{HUZHOU}.serve.log")


def call_api(
    url: str, token: str, method: str = "GET", body: object = None
) -> tuple[int, dict[str, object]]:
    """(status, JSON) of one auditor API call."""
    data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
    request = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def summarise(fed: Federation, node_id: str) -> None:
    with Store.open(NodeHome(fed.home(node_id)).db_url()) as store, store.connect() as conn:
        rows = conn.execute(
            sa.select(
                CreditResultRow.level, CreditResultRow.subject_type, CreditResultRow.flags
            ).where(CreditResultRow.status == int(model.ResultStatus.ACTIVE))
        ).all()
    levels = collections.Counter(model.CreditLevel(r.level).name for r in rows)
    types = collections.Counter(model.SubjectType(r.subject_type).name for r in rows)
    flags = collections.Counter(f for r in rows for f in json.loads(r.flags))
    click.echo(
        f"{node_id} {CITIES[node_id]}: {len(rows)} credit results ingested "
        f"(levels {', '.join(f'{k} {v}' for k, v in sorted(levels.items()))}; "
        f"{types['NATURAL_PERSON']} natural persons; "
        f"flags {', '.join(f'{k} {v}' for k, v in flags.most_common())})"
    )


@contextlib.contextmanager
def serving(fed: Federation) -> Iterator[None]:
    """Every node in its own `creditnode serve` process; all stopped on the way out."""
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs = {}
    try:
        for node_id in CITIES:
            ready = fed.root / f"{node_id}.ready"
            logs[node_id] = (fed.root / f"{node_id}.serve.log").open("wb")
            procs[node_id] = subprocess.Popen(
                [
                    *CREDITNODE,
                    "serve",
                    "--home",
                    str(fed.home(node_id)),
                    "--ready-file",
                    str(ready),
                ],
                stdout=logs[node_id],
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        for node_id, proc in procs.items():
            ready = fed.root / f"{node_id}.ready"
            while not ready.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{node_id} did not start; see {fed.root}/{node_id}.serve.log")
                time.sleep(0.05)
            click.echo(f"  {node_id} {CITIES[node_id]} serving on {ready.read_text()}")
        yield
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in logs.values():
            log.close()


def _wait(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> float:
    """Seconds until `condition` held; exit saying `what` did not happen in time."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"demo: {what} did not happen within {timeout:.0f} s")
        time.sleep(0.05)
    return time.monotonic() - started


def _sink_state(sink: pathlib.Path) -> tuple[int, set[str]]:
    """(cursor, result ids held) of the sync job's sink; (0, {}) before it exists."""
    if not sink.exists():
        return 0, set()
    with sqlite3.connect(sink) as conn:
        try:
            cursor = conn.execute("SELECT max(last_seq) FROM greenloan_cursor").fetchone()[0]
            ids = {r[0] for r in conn.execute("SELECT jgbs FROM greenloan_records")}
        except sqlite3.OperationalError:  # tables not made yet
            return 0, set()
    return int(cursor or 0), ids


def _huzhou_store(fed: Federation) -> Store:
    home = NodeHome(fed.home(HUZHOU))
    return Store.open(home.db_url(home.load_config()))


@contextlib.contextmanager
def following_the_feed(fed: Federation) -> Iterator[pathlib.Path]:
    """The Green Loan Link job following Huzhou's changefeed until the block ends."""
    sink = fed.root / "greenloan-sink.db"
    click.echo(
        "\nGreen Loan Link: the provincial job (cn-330000, role green-loan-sync) follows "
        "Huzhou's signed changefeed (creditnode greenloan-sync --follow):"
    )
    log = (fed.root / "greenloan-sync.log").open("wb")
    job = subprocess.Popen(
        [
            *CREDITNODE,
            "greenloan-sync",
            *("--target", fed.endpoint(HUZHOU), "--sink", f"sqlite:///{sink}"),
            *("--home", str(fed.home(PROVINCE)), "--follow"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        with _huzhou_store(fed) as store:
            head = store.changes.head()
        took = _wait(lambda: _sink_state(sink)[0] >= head, "the sync job catching up")
        records = len(_sink_state(sink)[1])
        click.echo(
            f"  caught up with all {head:,} changes in {took:.1f} s: {records:,} enterprise "
            f"records in {sink.name} (each batch signed, checked and committed with its cursor)"
        )
        yield sink
    finally:
        job.send_signal(signal.SIGTERM)
        try:
            job.wait(timeout=10)
        except subprocess.TimeoutExpired:
            job.kill()
            job.wait()
        log.close()


def repair_reaches_the_recipients(
    fed: Federation, sink: pathlib.Path, page: str, platform_token: str
) -> None:
    company = first_subject(fed, HUZHOU, "企业")
    subject = model.SubjectRef(model.SubjectIdType.USCC, company)
    click.echo(
        "\nCredit repair: the market regulator's 双公示 export names a general penalty (a fine "
        "of 5 万元) decided four months ago; `creditnode ingest` reads it and it flags the company:"
    )
    decided = repair.add_months(repair.china_day(SYSTEM.now()), -4)
    ends = repair.add_months(decided, 12)
    export = fed.root / "huzhou-cf-penalties.csv"
    with export.open("w", encoding="utf-8", newline="") as out:
        row = {
            "CF_XDR_MC": company_name(fed, company),
            "CF_XDR_LB": "法人及非法人组织",
            "CF_XDR_SHXYM": company,
            "CF_WSH": f"湖市监罚〔{decided.year}〕1号",
            "CF_WFXW": "未按规定公示年度报告",
            "CF_CFLB": "罚款",
            "CF_NR_FK": "5",
            "CF_JDRQ": decided.isoformat(),
            "CF_GSJZQ": ends.isoformat(),
            "CF_CFJG": "湖州市市场监督管理局",
        }
        writer = csv.DictWriter(out, fieldnames=list(row))
        writer.writeheader()
        writer.writerow(row)
    ingest = [*CREDITNODE, "ingest", "--format", "shuanggongshi-cf-csv", str(export)]
    done = subprocess.run(
        [*ingest, "--home", str(fed.home(HUZHOU))], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"demo: the penalty export was refused: {done.stderr or done.stdout}")
    click.echo(f"  {done.stdout.strip()}")
    with _huzhou_store(fed) as store:
        [record] = [r for r in store.penalties.in_force() if r.subject == subject]
        current = store.results.get_current(subject.id_type, subject.id)
    [flagged] = [r.result_id for r in current if "ADMINISTRATIVE_PENALTY" in r.flags]
    click.echo(f"  {company}: result {flagged} now carries ADMINISTRATIVE_PENALTY")
    outcome = ask(fed, JIAXING, HUZHOU, "hjjw", "xinyi-dai", company, False)
    click.echo(f"  Jiaxing asks Huzhou: {outcome['decision']} {describe(outcome)}")
    _wait(lambda: flagged in _sink_state(sink)[1], "the sync job receiving the flagged result")
    click.echo("  the sync job holds it too")
    repair_started = time.monotonic()
    url = f"{page}api/records/{urllib.parse.quote(record.record_id, safe='')}/repair"
    status, body = call_api(
        url, platform_token, "POST", {"reason": "信用修复决定书 湖信修〔2026〕1号"}
    )
    if status != 200:
        raise SystemExit(f"demo: the repair was refused: {status} {body}")
    reissued = body["reissued"]
    assert isinstance(reissued, list)
    click.echo(
        f"  the local platform repairs {record.record_id} over HTTP (POST api/records/…/repair, an "
        f"operator's token): {status}, re-issued "
        + ", ".join(f"{r['old']} -> {r['new']}" for r in reissued)
    )
    jiaxing = NodeHome(fed.home(JIAXING))

    def applied_at_jiaxing() -> bool:
        with Store.open(jiaxing.db_url(jiaxing.load_config())) as store:
            held = store.received.get(HUZHOU, flagged)
        return held is not None and not held.current

    _wait(applied_at_jiaxing, "Jiaxing applying the revocation notice")
    took = time.monotonic() - repair_started
    with Store.open(jiaxing.db_url(jiaxing.load_config())) as store:
        held = store.received.get(HUZHOU, flagged)
    assert held is not None and held.revoked_reason is not None
    click.echo(
        f"  Jiaxing's node applied Huzhou's signed notice {took:.1f} s after the repair: "
        f"{held.revoked_reason.name}, superseded by {held.superseded_by} (and logged it)"
    )
    _wait(lambda: flagged not in _sink_state(sink)[1], "the sync job dropping the result")
    click.echo("  the sync job dropped the flagged result and holds its repaired successor")


def company_name(fed: Federation, uscc: str) -> str:
    with (fed.root / f"{HUZHOU}-export.csv").open(encoding="utf-8") as f:
        return next(r["QYMC"] for r in csv.DictReader(f) if r["TYSHXYDM"] == uscc)


def first_subject(fed: Federation, node_id: str, subject_type: str) -> str:
    with (fed.root / f"{node_id}-export.csv").open(encoding="utf-8") as f:
        return next(r["TYSHXYDM"] for r in csv.DictReader(f) if r["ZTLX"] == subject_type)


def script(fed: Federation) -> list[tuple[str, str, str, str, str, bool, str]]:
    """(asker, peer, zone, purpose, subject, resident id?, what we expect)."""
    company = first_subject(fed, HUZHOU, "企业")
    person = first_subject(fed, HUZHOU, "自然人")
    ningbo_company = first_subject(fed, NINGBO, "企业")
    return [
        (JIAXING, HUZHOU, "hjjw", "xinyi-dai", company, False, "granted"),
        (HANGZHOU, HUZHOU, "yrd", "green-loan", company, False, "granted, with indicators"),
        (HUZHOU, NINGBO, "hyzt", "xinyi-dai", ningbo_company, False, "granted"),
        (HANGZHOU, HUZHOU, "hz-metro", "xinyi-xing", person, True, "granted (natural person)"),
        (SHANGHAI, HUZHOU, "yrd", "joint-sanction", company, False, "granted"),
        (SHANGHAI, HUZHOU, "hjjw", "xinyi-dai", company, False, "refused: not in zone"),
        (NINGBO, HUZHOU, "hyzt", "joint-sanction", company, False, "refused: purpose"),
        (JIAXING, HUZHOU, "hjjw", "xinyi-dai", person, True, "refused: natural person"),
        (SHANGHAI, HUZHOU, "yrd", "xinyi-dai", "91350100M000100Y43", False, "not found"),
        (NINGBO, HUZHOU, "hyzt", "green-loan", company, False, "refused: purpose"),
    ]


def ask(
    fed: Federation, asker: str, peer: str, zone: str, purpose: str, subject: str, resident: bool
) -> dict[str, object]:
    args = [
        *CREDITNODE,
        "query",
        "--home",
        str(fed.home(asker)),
        "--peer",
        peer,
        "--zone",
        zone,
        "--purpose",
        purpose,
        "--subject",
        subject,
        "--json",
    ]
    if resident:
        args.append("--resident-id")
    done = subprocess.run(args, capture_output=True, timeout=60, check=False)
    try:
        outcome: dict[str, object] = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise SystemExit(f"query failed: {done.stderr.decode(errors='replace')}") from None
    return outcome


def describe(outcome: dict[str, object]) -> str:
    result = outcome.get("result")
    if not isinstance(result, dict):
        return str(outcome.get("reason", ""))
    native = str(result["native_level"])
    if result.get("native_score") is not None:
        native += f", score {result['native_score']:g}"
    text = f"level {result['level']} ({native}) {result['subject_name']}"
    if result.get("flags"):
        text += f"; flags {' '.join(result['flags'])}"
    if result.get("indicators"):
        text += f"; indicators {json.dumps(result['indicators'], ensure_ascii=False)}"
    return text


def masked(subject: str, resident: bool) -> str:
    return subject[:6] + "********" + subject[-4:] if resident else subject


def show_auditor_page(page: str, token: str) -> None:
    status, body = call_api(f"{page}api/entries?limit=500", token)
    entries = body.get("entries")
    assert status == 200 and isinstance(entries, list), (status, body)
    click.echo(
        f"\nHuzhou's auditor page: {page}\n"
        f"  auditor token (every zone; residents masked): {token}\n"
        f"  it lists {len(entries)} exchange-log entries; open an entry to see its proof "
        "verified in the browser"
    )


def wait_for_ctrl_c() -> None:
    click.echo("\nThe federation keeps running (KEEP=1). Press Ctrl-C to stop it.")
    try:
        while True:
            signal.pause()
    except KeyboardInterrupt:
        click.echo("\nStopping.")


@click.command()
@click.option(
    "--keep", is_flag=True, help="Keep the federation running until Ctrl-C (make demo KEEP=1)."
)
def main(keep: bool) -> None:
    if DEMO.exists():
        shutil.rmtree(DEMO)  # every demo starts from nothing
    DEMO.mkdir()
    click.echo("Setting up five city nodes and four zones under demo/ ...")
    started = time.perf_counter()
    fed = build(
        DEMO.resolve(),
        {**CITIES, PROVINCE: "浙江省"},
        {**ZONES, "yrd": (*ZONES["yrd"], PROVINCE)},
        subjects=2000,
        seed=20261129,
        witnesses={HUZHOU: [JIAXING]},
        roles={PROVINCE: "green-loan-sync"},
    )
    tokens = enable_auditor_service(fed)
    click.echo(f"  done in {time.perf_counter() - started:.1f} s")
    for node_id in CITIES:
        summarise(fed, node_id)
    click.echo("\nStarting the nodes (creditnode serve, mutual TLS on loopback):")
    with serving(fed):
        page = auditor_page(fed)
        click.echo(
            "\nQueries (creditnode query: signed answer and log receipt verified by the "
            "asker, ASKED/ANSWERED entries on both sides):\n"
        )
        header = (
            f"{'asker':<10} {'peer':<10} {'zone':<9} {'purpose':<15} {'subject':<20} "
            f"{'outcome':<10} details"
        )
        click.echo(header)
        click.echo("-" * len(header))
        for asker, peer, zone, purpose, subject, resident, _expect in script(fed):
            outcome = ask(fed, asker, peer, zone, purpose, subject, resident)
            details = describe(outcome)
            click.echo(
                f"{asker:<10} {peer:<10} {zone:<9} {purpose:<15} "
                f"{masked(subject, resident):<20} {outcome['decision']!s:<10} {details}"
            )
        with following_the_feed(fed) as sink:
            repair_reaches_the_recipients(fed, sink, page, tokens[PLATFORM])
        time.sleep(0.5)  # let Huzhou send its last checkpoint to its witness
        show_auditor_page(page, tokens[AUDITOR])
        if keep:
            wait_for_ctrl_c()
    click.echo(
        "\nVerifying Huzhou's exchange log offline, with Jiaxing's cosignatures "
        "(creditnode log verify):"
    )
    # Jiaxing's witness key comes from the trust lists Huzhou holds (DESIGN.md §5 Member 10).
    done = subprocess.run(
        [*CREDITNODE, "log", "verify", "--home", str(fed.home(HUZHOU))],
        capture_output=True,
        text=True,
        check=False,
    )
    click.echo("  " + (done.stdout or done.stderr).strip())
    click.echo("\nAll node processes stopped. Homes, logs and trust lists are under demo/.")
    if done.returncode != 0:
        sys.exit(1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
