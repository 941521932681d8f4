"""The Green Loan Link record (绿贷通 / 数智绿金): one row per current credit result, as the
provincial sync job stores what the changefeed delivers. Pure: canonical result in, record out.
The format is documented in `adapters/greenloan.md`; its columns follow the pinyin-initial
style of the platforms' exports (`adapters/huzhou.md`), in lower case so SQL needs no quoting.
"""

from __future__ import annotations

import dataclasses
import json
import operator

from node.model import CreditResult, ResultStatus

SCHEMA_VERSION = 2  # 2: jgzt (结果状态)


@dataclasses.dataclass(frozen=True, slots=True)
class GreenLoanRecord:
    """One result as the Green Loan Link holds it; `jgbs` (the result id) is its key."""

    jgbs: str  # 结果标识 result id (names one content forever)
    zjlx: str  # 证件类型 USCC | RESIDENT_ID
    tyshxydm: str  # 统一社会信用代码 (or the resident id where a purpose allows persons)
    ztmc: str  # 主体名称
    ztlx: str  # 主体类型 ENTERPRISE, INDIVIDUAL_BUSINESS, ...
    xydj: str  # 信用等级 canonical A/B/C/D (优/良/中/差)
    pjdj: str  # 评价等级 the issuer scheme's own level
    pjfs: float | None  # 评价分数 score, when the purpose shows it
    pjtx: str  # 评价体系 scheme id with version
    sxbz: str  # 失信标志 flags, comma-separated, sorted
    lszb: str  # 绿色指标 indicators as a JSON object (keys sorted), "{}" when none
    pjrq: str  # 评价时间 evaluated_at, ISO 8601 UTC
    yxqz: str  # 有效期至 valid_until, ISO 8601 UTC
    fbjd: str  # 发布节点 issuer node id
    jgzt: str  # 结果状态 the result's status when fed: ACTIVE (a REVOKE deletes the row)


def record_from_result(result: CreditResult) -> GreenLoanRecord:
    """The record of one result the changefeed upserted."""
    level = result.level.name
    return GreenLoanRecord(
        jgbs=result.result_id,
        zjlx=result.subject.id_type.name,
        tyshxydm=result.subject.id,
        ztmc=result.subject_name,
        ztlx=result.subject_type.name,
        xydj=level.removeprefix("LEVEL_"),
        pjdj=result.native_level,
        pjfs=result.native_score,
        pjtx=result.scheme,
        sxbz=",".join(sorted(result.flags)),
        lszb=(
            json.dumps(dict(result.indicators), ensure_ascii=False, sort_keys=True)
            if result.indicators
            else "{}"
        ),
        pjrq=result.evaluated_at.isoformat(),
        yxqz=result.valid_until.isoformat(),
        fbjd=result.issuer_node,
        jgzt=ResultStatus.ACTIVE.name,  # the feed upserts current results only
    )


COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(GreenLoanRecord))
_VALUES = operator.attrgetter(*COLUMNS)


def record_row(result: CreditResult) -> tuple[object, ...]:
    """The record of `result` as a row: its values in COLUMNS order."""
    row: tuple[object, ...] = _VALUES(record_from_result(result))
    return row
