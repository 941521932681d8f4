"""Legacy register codes: USCCs in real registers whose check character is wrong (DESIGN.md §9,
issue 9 §6). A node lists the ones it knows in legacy-uscc.txt; exactly those are ingested,
stored and read back on both backends, answered over gRPC with mutual TLS, and asked about with
`creditnode query --legacy`. Any other wrong check character is a typo."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import pathlib
import sys
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
from click.testing import CliRunner, Result

from adapters.registry import get_adapter
from devtools.federation import Federation, build, run_cli
from node import signing, wire
from node.cli import main
from node.clock import SYSTEM, china_date
from node.errors import ConfigError, ImportRejected
from node.home import NodeHome, dumps_toml
from node.identifiers import make_uscc
from node.legacy_uscc import (
    LEGACY_USCC_FILE,
    MAX_FILE_BYTES,
    MAX_LEGACY_CODES,
    parse_legacy_codes,
    read_legacy_codes,
)
from node.model import SubjectIdType
from node.runtime import NodeRuntime
from node.store import Store
from tests.adapters.huzhou_export import huzhou_csv
from tests.pki import NodeTls
from tests.services.interchange_node import (
    HUZHOU,
    JIAXING,
    SHANGHAI,
    STUB,
    T0,
    Node,
    call,
    channel,
    query,
    reason_of,
)


def _wrong_check(first17: str) -> str:
    right = make_uscc(first17)[17]
    return first17 + ("0" if right != "0" else "1")


LEGACY = _wrong_check("91330502MA2B3C4D1")  # in the register with this check character
LEGACY_TOO = _wrong_check("91330502MA2B3C4D3")
TYPO = _wrong_check("91330502MA2B3C4D2")  # listed nowhere: a typo
EVALUATED = T0.date()  # current on the test node's clock


def _export(*codes: str, evaluated: dt.date = EVALUATED) -> bytes:
    """A huzhou-csv export with one enterprise per code, valid for most of a year."""
    until = evaluated + dt.timedelta(days=300)
    rows = [
        f"{code},湖州旧码企业{n},企业,zj-public-credit@2023,A,,{evaluated},{until},"
        for n, code in enumerate(codes, start=1)
    ]
    return huzhou_csv(*rows)


# --- the list file --------------------------------------------------------------------------


def test_list_reads_one_code_a_line_with_comments() -> None:
    """issue 9 §6: codes one a line, `#` comments, blank lines, a BOM, CRLF, lower case and
    spaces as in any USCC; a code listed twice is one code."""
    text = (
        f"\ufeff# 湖州 legacy register codes\r\n{LEGACY}\r\n\r\n"
        f"  {LEGACY_TOO.lower()[:9]} {LEGACY_TOO.lower()[9:]}  # 某公司\n{LEGACY}\n"
    )
    assert parse_legacy_codes(text.encode("utf-8")) == {LEGACY, LEGACY_TOO}
    assert parse_legacy_codes(b"# none yet\n") == frozenset()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"9133050", "line 2: not a legacy register code: USCC must have 18 characters, got 7"),
        (
            LEGACY[:8].encode() + b"I" + LEGACY[9:].encode(),
            "line 2: not a legacy register code: USCC character 9 is 'I'",
        ),
        (
            b"91ABCDEF" + LEGACY[8:].encode(),
            "line 2: not a legacy register code: USCC positions "
            "3-8 must be a six-digit division code, got 'ABCDEF'",
        ),
        (b"\xff" + LEGACY.encode(), "line 2: not UTF-8 text"),
        (
            b"9" * 100_000 + b"SECRET",
            "line 2: not a legacy register code: USCC must have 18 characters, got 100,006",
        ),
    ],
)
def test_a_malformed_line_is_named_by_its_number(line: bytes, message: str) -> None:
    """issue 9 §6: a bad line stops the load with its number and why, quoting at most one
    character or the division of it, however long it is."""
    with pytest.raises(ConfigError) as caught:
        parse_legacy_codes(LEGACY.encode() + b"\n" + line + b"\n", "legacy-uscc.txt")
    assert caught.value.message.startswith(f"legacy-uscc.txt {message}")
    assert len(caught.value.message) < 200
    assert "SECRET" not in caught.value.message and "999999" not in caught.value.message


def test_list_is_bounded(tmp_path: pathlib.Path) -> None:
    """issue 9 §6: at most 1,000,000 codes, in a file of at most 64 MiB; no file, no codes."""
    assert MAX_LEGACY_CODES == 1_000_000
    with pytest.raises(ConfigError, match="lists more than 1,000,000 codes"):
        parse_legacy_codes(f"{LEGACY}\n".encode() * (MAX_LEGACY_CODES + 1))
    path = tmp_path / LEGACY_USCC_FILE
    assert read_legacy_codes(path) == frozenset()
    with path.open("wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(ConfigError, match="larger than 64 MiB"):
        read_legacy_codes(path)
    path.unlink()
    path.mkdir()
    with pytest.raises(ConfigError, match="cannot read"):
        read_legacy_codes(path)


# --- node.toml: the retired switch ----------------------------------------------------------

GOOD_NODE = {"node_id": "cn-330500", "name": "湖州", "division_code": "330500"}


def test_the_old_switch_set_is_refused_and_unset_is_ignored_with_a_warning(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    """issue 9 §6: `legacy_uscc_allowed = true` admitted typos; a node.toml that still says so
    is refused and told to list the codes. `= false` (in every node.toml `init` wrote) loads."""
    home = NodeHome(tmp_path)
    home.config_file.write_text(dumps_toml({"node": {**GOOD_NODE, "legacy_uscc_allowed": True}}))
    with pytest.raises(ConfigError) as caught:
        home.load_config()
    assert str(home.config_file) in caught.value.message
    assert "legacy-uscc.txt" in caught.value.message
    home.config_file.write_text(dumps_toml({"node": {**GOOD_NODE, "legacy_uscc_allowed": False}}))
    with caplog.at_level(logging.WARNING, logger="node.config"):
        assert home.load_config().node_id == "cn-330500"
    assert "legacy_uscc_allowed = false is no longer read" in caplog.text


# --- ingest ---------------------------------------------------------------------------------


def test_adapter_admits_exactly_the_listed_codes() -> None:
    """issue 9 §6: a listed code is a row; an unlisted one with a wrong check char a problem."""
    adapter = get_adapter("huzhou-csv")
    with pytest.raises(ImportRejected) as caught:
        adapter.parse(_export(LEGACY, TYPO), issuer_node=HUZHOU, legacy_codes={LEGACY})
    assert [(p.row, p.field) for p in caught.value.problems] == [(2, "TYSHXYDM")]
    assert "check character" in caught.value.problems[0].reason
    with pytest.raises(ImportRejected):
        adapter.parse(_export(LEGACY), issuer_node=HUZHOU)
    [result] = adapter.parse(_export(LEGACY), issuer_node=HUZHOU, legacy_codes={LEGACY})
    assert result.subject.id == LEGACY


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def db_home(tmp_path: pathlib.Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """A home made by `creditnode init`, its store on each backend."""
    monkeypatch.setenv("CREDITNODE_DB_URL", db_url)
    path = tmp_path / "huzhou"
    result = _run("init", "--node-id", HUZHOU, "--name", "湖州", "--home", str(path))
    assert result.exit_code == 0, result.output
    return path


def test_ingest_stores_a_listed_code_and_reads_it_back(
    db_home: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """issue 9 §6: `creditnode ingest` takes the list from the home: a file with an unlisted
    wrong check character imports nothing; the listed code is stored and read back."""
    (db_home / LEGACY_USCC_FILE).write_text(f"# 旧码\n{LEGACY}\n", encoding="utf-8")
    export = tmp_path / "export.csv"
    export.write_bytes(_export(LEGACY, TYPO))
    result = _run("ingest", "--format", "huzhou-csv", str(export), "--home", str(db_home))
    assert result.exit_code == 1
    assert "row 2" in result.stderr and "check character" in result.stderr
    export.write_bytes(_export(LEGACY))
    result = _run("ingest", "--format", "huzhou-csv", str(export), "--home", str(db_home))
    assert result.exit_code == 0, result.output
    assert "1 new" in result.stdout
    with Store.open(NodeHome(db_home).db_url()) as store:
        [current] = store.results.get_current(SubjectIdType.USCC, LEGACY)
        assert store.results.get_current(SubjectIdType.USCC, TYPO) == []
    assert (current.subject.id, current.subject_name) == (LEGACY, "湖州旧码企业1")


def test_ingest_refuses_a_malformed_list_naming_the_line(
    db_home: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """issue 9 §6: a malformed legacy-uscc.txt is a clear error, not an ignored line."""
    (db_home / LEGACY_USCC_FILE).write_text(f"{LEGACY}\n{LEGACY[:17]}\n", encoding="utf-8")
    export = tmp_path / "export.csv"
    export.write_bytes(_export(LEGACY))
    with pytest.raises(ConfigError) as caught:  # `creditnode` prints it as one line, exit 1
        _run("ingest", "--format", "huzhou-csv", str(export), "--home", str(db_home))
    assert caught.value.message == (
        f"{db_home / LEGACY_USCC_FILE} line 2: not a legacy register code: USCC must have 18 "
        "characters, got 17"
    )


# --- answering over gRPC with mutual TLS ----------------------------------------------------


@pytest.fixture
async def legacy_node(db_url: str, tls: dict[str, NodeTls]) -> AsyncIterator[Node]:
    """Huzhou holding a result for LEGACY (ingested under its list), answering Jiaxing."""
    store = Store.open(db_url)
    results = get_adapter("huzhou-csv").parse(
        _export(LEGACY), issuer_node=HUZHOU, legacy_codes={LEGACY}
    )
    store.results.import_results(
        results, source="legacy.csv", file_sha256="0" * 64, fmt="huzhou-csv"
    )
    node = Node(store, tls[HUZHOU], {tls[n].fingerprint: n for n in (JIAXING, SHANGHAI)})
    node.legacy_codes = frozenset({LEGACY})
    await node.start([tls[JIAXING], tls[SHANGHAI]])
    yield node
    await node.stop()
    store.close()


async def test_a_listed_legacy_code_is_granted_over_grpc(
    legacy_node: Node, tls: dict[str, NodeTls]
) -> None:
    """issue 9 §6: QueryCredit for a listed legacy code is GRANTED with the stored record (it
    was refused as INVALID_SUBJECT_ID, so a record ingested under the flag never flowed); the
    signed result parses on the asking side, and a repeated request id replays it."""
    async with channel(legacy_node, tls[JIAXING]) as ch:
        response = await call(ch, query("legacy-1", subject=LEGACY))
        again = await call(ch, query("legacy-1", subject=LEGACY))
    verified = signing.verify_envelope(
        wire.envelope_from_pb(response.result),
        payload_type=signing.PAYLOAD_CREDIT_RESULT,
        keys={legacy_node.signer.keyid: legacy_node.signer.verification_key()},
    )
    result = wire.result_from_bytes(verified.payload)
    assert (result.subject.id, result.subject_name, result.audience_node) == (
        LEGACY,
        "湖州旧码企业1",
        JIAXING,
    )
    assert again.result == response.result
    assert again.receipt.log_index == response.receipt.log_index


async def test_an_unlisted_wrong_check_character_is_still_invalid(
    legacy_node: Node, tls: dict[str, NodeTls]
) -> None:
    """issue 9 §6: only listed codes pass; any other wrong check character is
    INVALID_SUBJECT_ID, on QueryCredit and within a BatchQueryCredit stream."""
    async with channel(legacy_node, tls[JIAXING]) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(ch, query("typo-1", subject=TYPO))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert reason_of(caught.value) == "INVALID_SUBJECT_ID"
        stream = ch.stream_stream(
            f"/{STUB}/BatchQueryCredit",
            request_serializer=wire.serialize,
            response_deserializer=wire.spb.QueryCreditResponse.FromString,
        )
        items = [
            query("b1", subject=LEGACY),
            query("b2", subject=TYPO),
            query("b3", subject=LEGACY.lower()),
        ]
        responses = [r async for r in stream(iter(items), timeout=10)]
    assert [r.error.code for r in responses] == [0, grpc.StatusCode.INVALID_ARGUMENT.value[0], 0]
    assert responses[0].HasField("result") and responses[2].HasField("result")


# --- `creditnode query --legacy` against a serving node -------------------------------------

HANGZHOU, ZONE = "cn-330100", "hz-metro"


@pytest.fixture
def federation(tmp_path: pathlib.Path) -> Iterator[Federation]:
    """Huzhou and Hangzhou in hz-metro; Huzhou lists LEGACY and has ingested a result for it."""
    fed = build(
        tmp_path, {HUZHOU: "湖州", HANGZHOU: "杭州"}, {ZONE: (HANGZHOU, HUZHOU)}, subjects=10
    )
    home = fed.home(HUZHOU)
    (home / LEGACY_USCC_FILE).write_text(f"{LEGACY}  # 湖州旧码企业1\n", encoding="utf-8")
    export = tmp_path / "legacy.csv"
    export.write_bytes(_export(LEGACY, evaluated=china_date(SYSTEM.now()) - dt.timedelta(10)))
    run_cli("ingest", "--format", "huzhou-csv", export, "--home", home)
    yield fed


async def _query(fed: Federation, subject: str, *extra: str) -> tuple[int, str]:
    """Hangzhou's `creditnode query` in a child process (this loop keeps Huzhou serving)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "node.cli",
        "query",
        "--home",
        str(fed.home(HANGZHOU)),
        "--peer",
        HUZHOU,
        "--zone",
        ZONE,
        "--purpose",
        "xinyi-dai",
        "--subject",
        subject,
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode()


async def test_query_cli_asks_about_a_legacy_code_with_legacy(federation: Federation) -> None:
    """issue 9 §6: `creditnode query` sends a wrong check character only with --legacy (else
    it says to add it); Huzhou, answering in its worker process, grants its listed code and
    refuses an unlisted one as INVALID_SUBJECT_ID."""
    runtime = NodeRuntime(NodeHome(federation.home(HUZHOU)))
    assert runtime.answers_in_worker and runtime.parts.legacy_codes == {LEGACY}
    await runtime.start()
    try:
        code, out = await _query(federation, LEGACY)
        assert code == 2, out
        assert "if it is a legacy register code, ask with --legacy" in out

        code, out = await _query(federation, LEGACY, "--legacy")
        assert code == 0, out
        assert out.startswith(f"GRANTED (signature, binding and log receipt verified): {LEGACY} ")
        assert "湖州旧码企业1" in out

        code, out = await _query(federation, TYPO, "--legacy")
        assert code == 3, out  # REFUSED (issue 14 §8)
        assert out.startswith(f"REFUSED: {TYPO} ")
        assert "INVALID_SUBJECT_ID" in out

        code, out = await _query(federation, "3" * 18, "--legacy", "--resident-id")
        assert code == 2 and "a resident id has no legacy form" in out
    finally:
        await runtime.stop()
