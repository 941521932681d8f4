"""The Green Loan Link feed's test setting: Huzhou's node serving `GreenLoanSync` and the
provincial sync job's home (cn-330000, role `green-loan-sync` on the yrd list), and the
sink and source as records to compare."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import pathlib
from collections.abc import AsyncIterator

from sqlalchemy import select

from adapters import greenloan
from devtools.federation import build
from node import model
from node.greenloan_sink import APPLIED, RECORDS, GreenLoanSink
from node.greenloan_sync import SyncJob
from node.home import NodeHome
from node.runtime import NodeRuntime
from node.store.results import RESULTS, result_from_row
from tests.federation_helpers import HUZHOU, SHANGHAI

PROVINCE = "cn-330000"  # 浙江省: the Green Loan Link's sync job


@dataclasses.dataclass
class Setup:
    huzhou: NodeRuntime
    province: NodeRuntime  # not serving: its keys and trust lists, as the job uses them
    shanghai: NodeRuntime
    root: pathlib.Path


@contextlib.asynccontextmanager
async def greenloan_setting(tmp_path: pathlib.Path) -> AsyncIterator[Setup]:
    fed = build(
        tmp_path,
        {HUZHOU: "湖州", SHANGHAI: "上海", PROVINCE: "浙江省"},
        {"yrd": (HUZHOU, SHANGHAI, PROVINCE)},
        subjects=40,
        roles={PROVINCE: "green-loan-sync"},
    )
    huzhou = NodeRuntime(NodeHome(fed.home(HUZHOU)))
    await huzhou.start()
    province = NodeRuntime(NodeHome(fed.home(PROVINCE)))
    shanghai = NodeRuntime(NodeHome(fed.home(SHANGHAI)))
    try:
        yield Setup(huzhou, province, shanghai, tmp_path)
    finally:
        await province.stop()
        await shanghai.stop()
        await huzhou.stop()


def job(setup: Setup, sink: GreenLoanSink, **options: object) -> SyncJob:
    client = setup.province.peer_client(HUZHOU, "yrd")
    return SyncJob(
        channel=client.channel,
        source=HUZHOU,
        audience=PROVINCE,
        key_for=lambda node, keyid: setup.province.trust.peer_key(node, keyid),
        sink=sink,
        clock=setup.province.clock,
        **options,  # type: ignore[arg-type]
    )


def source_results(huzhou: NodeRuntime) -> list[model.CreditResult]:
    """Huzhou's current enterprise results (what the green-loan purpose may see), by id."""
    query = (
        select(RESULTS)
        .where(
            RESULTS.c.status == int(model.ResultStatus.ACTIVE),
            RESULTS.c.subject_type == int(model.SubjectType.ENTERPRISE),
        )
        .order_by(RESULTS.c.result_id)
    )
    with huzhou.store.connect() as conn:
        return [result_from_row(row) for row in conn.execute(query)]


def source_records(huzhou: NodeRuntime) -> dict[str, greenloan.GreenLoanRecord]:
    """What the sink must hold: the source's results as Green Loan Link records."""
    return {r.result_id: greenloan.record_from_result(r) for r in source_results(huzhou)}


def sink_records(sink: GreenLoanSink) -> dict[str, greenloan.GreenLoanRecord]:
    with sink._begin() as conn:
        rows = conn.execute(select(RECORDS)).mappings().all()
    return {
        row["jgbs"]: greenloan.GreenLoanRecord(**{c: row[c] for c in greenloan.COLUMNS})
        for row in rows
    }


def applied_seqs(sink: GreenLoanSink) -> list[int]:
    with sink._begin() as conn:
        return [row.seq for row in conn.execute(select(APPLIED.c.seq).order_by(APPLIED.c.seq))]


def reevaluate(huzhou: NodeRuntime, count: int, tag: str) -> list[str]:
    """Re-evaluate `count` current enterprise results (new ids, level D); the old ids."""
    current = source_results(huzhou)[:count]
    later = [
        dataclasses.replace(
            r,
            result_id=f"{r.result_id}-{tag}",
            level=model.CreditLevel.D,
            native_level="D",
            native_score=None,
            evaluated_at=r.evaluated_at + dt.timedelta(days=30),
            status=model.ResultStatus.ACTIVE,
            supersedes="",
        )
        for r in current
    ]
    huzhou.store.results.import_results(
        later, source=f"{tag}.csv", file_sha256="0" * 64, fmt="test", now=huzhou.clock.now()
    )
    return [r.result_id for r in current]
