"""Recognition on the asking side (issue 11 §4): three real cities with three schemes — Huzhou
(zj-public-credit@2023), Shanghai (sh-public-credit@2022), Huangshan (ah-public-credit@2022) —
ask each other over mutual TLS and read every answer on their own scheme under the zone's
crosswalk; a scheme without a crosswalk is reported, never mapped; `creditnode query` shows both
levels side by side (and --json all three parts); a kept result verifies again offline."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import pathlib
import sys
from collections.abc import AsyncIterator

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import insert, update

from adapters.crosswalks import NotRecognised, RecognisedView
from devtools.federation import Federation, build
from node import model, signing, wire
from node.errors import ConfigError
from node.home import NodeHome
from node.identifiers import make_uscc
from node.recognition import Recognition, choose_local_scheme
from node.runtime import NodeRuntime
from node.store import Store
from node.store.received import RECEIVED
from node.store.store import alembic_config
from tests.federation_helpers import HUZHOU, SHANGHAI, started, subjects_of

HUANGSHAN = "cn-341000"
ZJ, SH, AH, CN = (
    "zj-public-credit@2023",
    "sh-public-credit@2022",
    "ah-public-credit@2022",
    "cn-public-credit@2022",
)
DAI = "xinyi-dai"
DISHONEST = ("SERIOUS_DISHONESTY",)
Nodes = dict[str, NodeRuntime]


# --- which scheme a node recognises onto ---------------------------------------------------


@pytest.mark.parametrize(
    ("division", "configured", "local"),
    [
        ("330500", None, ZJ),  # Huzhou issues zj and its own hz-enterprise: the province's
        ("310000", None, SH),
        ("341000", None, AH),
        ("320100", None, "js-public-credit@2021"),
        ("330500", "hz-enterprise-credit@2021", "hz-enterprise-credit@2021"),  # node.toml
        ("650100", None, None),  # Urumqi: no shipped scheme, so nothing is recognised
    ],
)
def test_local_scheme_is_the_provinces_unless_configured(
    division: str, configured: str | None, local: str | None
) -> None:
    doc = {} if configured is None else {"recognition": {"scheme": configured}}
    recognition = Recognition.for_node(division, doc)
    assert recognition.local_scheme == local
    if local is None:
        assert recognition.undecided.endswith("set [recognition] scheme in node.toml")


def test_an_unknown_configured_scheme_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown scheme 'xx@1'"):
        Recognition.for_node("330500", {"recognition": {"scheme": "xx@1"}})
    assert choose_local_scheme("330500", None, {}) == (
        None,
        "this node (division 330500) issues no scheme to recognise results onto; "
        "set [recognition] scheme in node.toml",
    )


def _peer_result(scheme: str, native_level: str, zone: str = "yrd") -> model.CreditResult:
    day = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
    return model.CreditResult(
        result_id="r-1",
        subject=model.SubjectRef(model.SubjectIdType.USCC, make_uscc("91310000MA1FL0F86")),
        subject_name="某公司",
        subject_type=model.SubjectType.ENTERPRISE,
        issuer_node=SHANGHAI,
        scheme=scheme,
        native_level=native_level,
        level=model.CreditLevel.B,
        evaluated_at=day,
        valid_until=day + dt.timedelta(days=365),
        flags=("UNDER_REPAIR",),
        zone=zone,
    )


@pytest.mark.parametrize(
    ("scheme", "level", "zone", "expected"),
    [
        (ZJ, "良", "hjjw", RecognisedView(ZJ, "B", model.CreditLevel.B, ("UNDER_REPAIR",), "")),
        (SH, "良", "hjjw", NotRecognised(f"no crosswalk {SH} → {ZJ} in hjjw")),
        (ZJ, "AA+", "hjjw", NotRecognised(f"unknown level 'AA+' of scheme {ZJ}")),
        (
            "x" * 5000 + "@1",
            "B",
            "yrd",
            NotRecognised(f"unknown scheme {'x' * 40!r}... (5,002 characters)"),
        ),
    ],
)
def test_results_under_our_scheme_or_without_a_crosswalk(
    scheme: str, level: str, zone: str, expected: RecognisedView | NotRecognised
) -> None:
    """Jiaxing (zj) reads a zj result as it is; a scheme or level it cannot place is named as
    such (bounded), never guessed."""
    recognition = Recognition.for_node("330400", {})
    assert recognition.recognise(_peer_result(scheme, level), zone) == expected


def test_kept_recognition_survives_the_round_trip_and_the_migration(db_url: str) -> None:
    """A row kept before the migration that adds recognition reads back with none; rows kept
    after carry the view or the reason (SQLite and PostgreSQL)."""
    at = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    with Store.open(db_url, migrate=False) as store:
        store.migrate(_before("received_recognition"))
        with store.begin() as conn:
            conn.execute(
                insert(RECEIVED).values(
                    issuer_node=SHANGHAI,
                    result_id="old",
                    zone="yrd",
                    purpose=DAI,
                    envelope=b"e",
                    received_at=at,
                )
            )
        store.migrate()
        view = RecognisedView(ZJ, "D", model.CreditLevel.D, ("A_B", "C"), "yrd/x@1")
        missing = NotRecognised(f"no crosswalk {CN} → {ZJ} in yrd")
        for result_id, recognised in (("new", view), ("none", missing)):
            store.received.keep(
                issuer_node=SHANGHAI, result_id=result_id, zone="yrd", purpose=DAI,
                envelope=b"e", at=at, recognised=recognised,
            )  # fmt: skip
        got = {r: store.received.get(SHANGHAI, r) for r in ("old", "new", "none")}
        assert {r: k.recognised for r, k in got.items() if k} == {
            "old": None,
            "new": view,
            "none": missing,
        }


def _before(name: str) -> str:
    """The revision just before the migration whose id ends with `name`."""
    script = ScriptDirectory.from_config(alembic_config())
    [revision] = [r for r in script.walk_revisions() if r.revision.endswith(name)]
    assert isinstance(revision.down_revision, str)
    return revision.down_revision


# --- three cities, three schemes ------------------------------------------------------------


def reissue(
    node: NodeRuntime, uscc: str, scheme: str, native: str, score: float | None, *flags: str
) -> str:
    """A new evaluation of a subject under `scheme` (the newest result answers); its id."""
    [old, *_] = node.store.results.get_current(model.SubjectIdType.USCC, uscc)
    canonical = {"A": "A", "优": "A", "AA": "A", "良": "B", "B": "B"}[native]
    new = dataclasses.replace(
        old,
        result_id=f"{old.result_id}-{scheme}",
        scheme=scheme,
        native_level=native,
        native_score=score,
        level=model.CreditLevel[canonical],
        flags=flags,
        evaluated_at=old.evaluated_at + dt.timedelta(days=10),
    )
    node.store.results.import_results(
        [new], source="re.csv", file_sha256="0" * 64, fmt="test", now=node.clock.now()
    )
    return new.result_id


@dataclasses.dataclass
class Cities:
    fed: Federation
    nodes: Nodes
    subject: dict[str, str]  # name -> USCC: sh0 (良, dishonest), cn0 (national scale), zj0, ah0


@pytest.fixture
async def cities(tmp_path: pathlib.Path) -> AsyncIterator[Cities]:
    fed = build(
        tmp_path,
        {HUZHOU: "湖州", SHANGHAI: "上海", HUANGSHAN: "黄山"},
        {"yrd": (SHANGHAI, HUZHOU, HUANGSHAN), "hz-metro": (HUZHOU, HUANGSHAN)},
        subjects=20,
    )
    nodes = {n: NodeRuntime(NodeHome(fed.home(n))) for n in (HUZHOU, SHANGHAI, HUANGSHAN)}
    [sh0, cn0, *_] = subjects_of(fed, SHANGHAI)["企业"]
    zj0 = subjects_of(fed, HUZHOU)["企业"][0]
    ah0 = subjects_of(fed, HUANGSHAN)["企业"][0]
    reissue(nodes[SHANGHAI], sh0, SH, "良", 80, "SERIOUS_DISHONESTY")
    reissue(nodes[SHANGHAI], cn0, CN, "B", None)
    reissue(nodes[HUZHOU], zj0, ZJ, "B", 780)
    reissue(nodes[HUANGSHAN], ah0, AH, "AA", 850)
    async with started(nodes):
        yield Cities(fed, nodes, {"sh0": sh0, "cn0": cn0, "zj0": zj0, "ah0": ah0})


def _uscc(uscc: str) -> model.SubjectRef:
    return model.SubjectRef(model.SubjectIdType.USCC, uscc)


# (asker, peer, zone, subject) -> (our scheme, our level, national, flags kept, crosswalk)
MATRIX = [
    (HUZHOU, SHANGHAI, "yrd", "sh0", (ZJ, "D", "D", DISHONEST, f"yrd/{SH}→{ZJ}@1")),
    (HUANGSHAN, SHANGHAI, "yrd", "sh0", (AH, "C", "D", DISHONEST, f"yrd/{SH}→{AH}@1")),
    (SHANGHAI, HUZHOU, "yrd", "zj0", (SH, "良", "B", (), f"yrd/{ZJ}→{SH}@1")),
    (HUANGSHAN, HUZHOU, "hz-metro", "zj0", (AH, "A", "B", (), f"hz-metro/{ZJ}→{AH}@1")),
    (HUZHOU, HUANGSHAN, "hz-metro", "ah0", (ZJ, "A", "A", (), f"hz-metro/{AH}→{ZJ}@1")),
    (SHANGHAI, HUANGSHAN, "yrd", "ah0", (SH, "优", "A", (), f"yrd/{AH}→{SH}@1")),
]  # fmt: skip


async def test_each_city_reads_the_others_on_its_own_scheme(cities: Cities) -> None:
    """Six asks across two zones, each recognised under that zone's crosswalk (the serious
    dishonesty cap applied, the flag kept) and kept with the envelope; a national-scale result
    has no crosswalk in yrd and is reported so, and kept unrecognised."""
    for asker, peer, zone, name, expected in MATRIX:
        outcome = await cities.nodes[asker].ask(peer, zone, DAI, _uscc(cities.subject[name]))
        assert outcome.answer is not None, outcome.reason
        view = outcome.recognised
        assert isinstance(view, RecognisedView), (asker, peer, view)
        got = (view.scheme, view.native_level, view.level.name, view.flags, view.crosswalk)
        assert got == expected, (asker, peer)
        kept = cities.nodes[asker].store.received.get(peer, outcome.answer.result.result_id)
        assert kept is not None and kept.recognised == view
        assert kept.envelope == wire.envelope_bytes(outcome.answer.envelope)

    huzhou = cities.nodes[HUZHOU]
    outcome = await huzhou.ask(SHANGHAI, "yrd", DAI, _uscc(cities.subject["cn0"]))
    assert outcome.answer is not None and outcome.answer.result.scheme == CN
    assert outcome.recognised == NotRecognised(f"no crosswalk {CN} → {ZJ} in yrd")
    kept = huzhou.store.received.get(SHANGHAI, outcome.answer.result.result_id)
    assert kept is not None and kept.recognised == outcome.recognised


async def _creditnode(*args: object) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "node.cli", *map(str, args),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode()


def _words(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.splitlines()]


async def test_query_shows_both_levels_and_the_kept_result_verifies_offline(
    cities: Cities,
) -> None:
    home = cities.fed.home(HUZHOU)
    ask = ("query", "--home", home, "--peer", SHANGHAI, "--zone", "yrd", "--purpose", DAI)
    code, out = await _creditnode(*ask, "--subject", cities.subject["sh0"])
    assert code == 0, out
    assert _words(out)[3:] == [
        f"peer {SHANGHAI} here {HUZHOU}",
        f"scheme {SH} {ZJ}",
        "level 良 (national B) D (national D)",
        "score 80 –",
        "flags SERIOUS_DISHONESTY SERIOUS_DISHONESTY",
        f"table yrd/{SH}→{ZJ}@1",
    ]
    code, out = await _creditnode(*ask, "--subject", cities.subject["cn0"])
    assert code == 0, out  # GRANTED and verified; only not recognised here
    assert out.splitlines()[-1] == f"  not recognised: no crosswalk {CN} → {ZJ} in yrd"

    code, out = await _creditnode(*ask, "--subject", cities.subject["sh0"], "--json")
    assert code == 0, out
    doc = json.loads(out)
    assert doc["recognised"] == {
        "scheme": ZJ,
        "native_level": "D",
        "level": "D",
        "flags": ["SERIOUS_DISHONESTY"],
    }
    assert doc["crosswalk"] == f"yrd/{SH}→{ZJ}@1" and doc["not_recognised"] is None
    assert doc["result"]["native_level"] == "良" and doc["envelope"]["signatures"]
    result_id = doc["result"]["result_id"]

    # Shanghai goes away: the kept envelope verifies against the trust lists on disk alone.
    await cities.nodes.pop(SHANGHAI).stop()
    show = ("received", "show", result_id, "--home", home, "--verify")
    code, out = await _creditnode(*show, "--json")
    assert code == 0, out
    kept = json.loads(out)
    assert kept["envelope"] == doc["envelope"] and kept["verified"] == {"ok": True, "problem": None}
    assert (kept["recognised"], kept["crosswalk"]) == (doc["recognised"], doc["crosswalk"])
    code, out = await _creditnode(*show)
    assert code == 0, out
    assert _words(out)[-1] == (
        f"verified offline: signed by {SHANGHAI} with a key of the trust lists held, issued to "
        f"this node; recognised again through yrd/{SH}→{ZJ}@1: the same"
    )

    # One byte of the kept signature changed: it no longer verifies (exit 5), offline too.
    held = cities.nodes[HUZHOU].store.received.get(SHANGHAI, result_id)
    assert held is not None
    envelope = wire.envelope_from_bytes(held.envelope)
    first = envelope.signatures[0]
    forged = signing.EnvelopeSignature(first.keyid, first.sig[:-1] + bytes([first.sig[-1] ^ 1]))
    tampered = dataclasses.replace(envelope, signatures=(forged, *envelope.signatures[1:]))
    with cities.nodes[HUZHOU].store.begin() as conn:
        conn.execute(
            update(RECEIVED)
            .where(RECEIVED.c.result_id == result_id)
            .values(envelope=wire.envelope_bytes(tampered))
        )
    code, out = await _creditnode(*show)
    assert code == 5, out
    assert out.splitlines()[-1].startswith("NOT VERIFIED: BAD_SIGNATURE")
