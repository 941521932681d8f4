"""Synthetic but realistic platform exports for demos, tests and benchmarks.

Deterministic for a seed and a date: the same (city, subjects, seed, as_of) gives the same
results and the same bytes. Dates are relative to `as_of`, so every result is valid on that date
(unless asked for expired ones) whatever the calendar says when it runs. Every identifier is
valid (USCC and resident-id check characters, the city's divisions), so a generated file
imports cleanly; the data describe no real subject.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import random
from collections.abc import Iterator

from adapters.huzhou import CHINA_TZ
from adapters.penalty_class import builtin_rule, classify
from adapters.registry import get_adapter
from adapters.result_ids import result_id_for
from adapters.schemes import Scheme, builtin_schemes
from adapters.shuanggongshi import record_id_for
from node import divisions, identifiers, repair
from node.errors import InvalidInput
from node.model import (
    CreditLevel,
    CreditResult,
    SubjectIdType,
    SubjectRef,
    SubjectType,
    require_node_id,
)
from node.public_records import ListChange, ListRemoval, PenaltyRecord, RecordKind

MAIN_SCHEME = "zj-public-credit@2023"
ENTERPRISE_SCHEME = "hz-enterprise-credit@2021"  # a share of enterprises use the local scheme

# USCC positions 1-2 (GB 32100-2015 table 1): registration authority and organisation type.
_USCC_PREFIX: dict[SubjectType, tuple[str, ...]] = {
    SubjectType.ENTERPRISE: ("91", "91", "91", "91", "93"),  # 93: farmers' cooperative
    SubjectType.INDIVIDUAL_BUSINESS: ("92",),
    SubjectType.SOCIAL_ORGANIZATION: ("51", "52", "53"),  # 社团, 民办非企业, 基金会
    SubjectType.PUBLIC_INSTITUTION: ("12",),
    SubjectType.GOVERNMENT_AGENCY: ("11",),
}
_TYPE_WEIGHTS = (
    (SubjectType.ENTERPRISE, 70),
    (SubjectType.INDIVIDUAL_BUSINESS, 17),
    (SubjectType.SOCIAL_ORGANIZATION, 4),
    (SubjectType.PUBLIC_INSTITUTION, 3),
    (SubjectType.GOVERNMENT_AGENCY, 2),
    (SubjectType.NATURAL_PERSON, 4),
)
# Mostly A and B, some C, few D.
_LEVELS: tuple[CreditLevel, ...] = (CreditLevel.A, CreditLevel.B, CreditLevel.C, CreditLevel.D)
_LEVEL_WEIGHTS = (45, 40, 11, 4)
_ORG_CODE_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_ORG_CODE_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)  # GB 11714-1997 organisation code check

_CORES = (
    "华达", "永兴", "恒远", "绿源", "天誉", "瑞丰", "金鑫", "宏业", "鼎盛", "兴隆", "安泰", "正和",
    "合力", "东方", "新源", "博远", "嘉禾", "明辉", "富春", "太湖", "苕溪", "竹乡", "丝府", "湖笔",
    "弁山", "莫干", "南浔", "碧浪", "菰城", "吉祥", "凯源", "晟达", "中恒", "远航", "汇通", "佳美",
)  # fmt: skip
_TRADES = (
    "纺织", "竹木制品", "电梯", "新材料", "生物科技", "建材", "物流", "茶业", "童装", "电子商务",
    "机械", "环保科技", "包装", "家居", "印染", "光伏科技", "电池", "木业", "水产养殖", "旅游开发",
    "农业开发", "电子", "智能装备", "化纤", "食品", "文化传媒", "建筑工程", "汽车配件", "医疗器械",
)  # fmt: skip
_COMPANY_SUFFIXES = ("有限公司", "有限公司", "有限公司", "股份有限公司", "有限责任公司")
_SHOPS = ("小吃店", "五金店", "服装店", "便利店", "理发店", "水果店", "家电维修部", "农家乐",
          "茶叶店", "副食品店", "建材经营部", "汽车修理店")  # fmt: skip
_SURNAMES = ("王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐", "孙", "沈", "朱",
             "钱", "姚", "潘", "费", "闵", "邱", "俞", "褚", "蔡", "施")  # fmt: skip
_GIVEN = ("伟", "芳", "娜", "敏", "静", "强", "磊", "军", "洋", "勇", "艳", "杰", "涛", "明",
          "超", "秀英", "建华", "建国", "晓燕", "志强", "丽华", "海燕", "文杰", "佳怡",
          "子涵")  # fmt: skip
_SOCIETIES = ("行业协会", "商会", "慈善基金会", "志愿者协会", "培训学校", "养老服务中心",
              "文化研究会", "体育协会")  # fmt: skip
_INSTITUTIONS = ("人民医院", "中医院", "实验学校", "图书馆", "疾病预防控制中心",
                 "公共资源交易中心", "不动产登记服务中心", "检验检测中心",
                 "职业技术学院")  # fmt: skip
_AGENCIES = ("市场监督管理局", "发展和改革委员会", "生态环境局", "自然资源和规划局",
             "人力资源和社会保障局", "交通运输局", "农业农村局", "商务局", "税务局")  # fmt: skip
_GREEN_RATINGS = ("深绿", "中绿", "浅绿")

# A current result was evaluated 1 day to (validity - margin) days before `as_of`, so it is still
# valid at least this long after `as_of`: a demo or test started near midnight keeps its data.
VALIDITY_MARGIN_DAYS = 30
# An expired one ran out 1 to this many days before `as_of`.
_EXPIRED_SPREAD_DAYS = 180


def generate_results(
    city: str,
    subjects: int,
    seed: int,
    as_of: dt.date,
    *,
    expired_share: float = 0.0,
) -> list[CreditResult]:
    """`subjects` results issued by node `city` (e.g. cn-330500), one per distinct subject,
    valid on `as_of` (a date in China) but for about `expired_share` of them, which expired
    before it."""
    require_node_id(city, "city")
    if subjects < 0:
        raise InvalidInput(f"subjects must not be negative, got {subjects}")
    if not 0.0 <= expired_share <= 1.0:
        raise InvalidInput(f"expired_share must be between 0 and 1, got {expired_share}")
    generator = _Generator(city, random.Random(f"{city}/{seed}"), as_of, expired_share)
    return generator.results(subjects)


def generate_export(
    city: str,
    subjects: int,
    seed: int,
    as_of: dt.date,
    fmt: str = "huzhou-csv",
    *,
    expired_share: float = 0.0,
) -> bytes:
    """A platform export file in format `fmt` (an adapter name) that imports as
    `generate_results(city, subjects, seed, as_of, expired_share=...)`."""
    results = generate_results(city, subjects, seed, as_of, expired_share=expired_share)
    return get_adapter(fmt).render(results)


def organisation_code_check(first8: str) -> str:
    """GB 11714-1997 check character of an organisation code (USCC positions 9-17)."""
    # Letters count A=10 ... Z=35, which is what base-36 digits are.
    total = sum(int(c, 36) * w for c, w in zip(first8, _ORG_CODE_WEIGHTS, strict=True))
    check = 11 - total % 11
    return {10: "X", 11: "0"}.get(check, str(check))


@dataclasses.dataclass
class _Generator:
    city: str
    rng: random.Random
    as_of: dt.date
    expired_share: float

    def __post_init__(self) -> None:
        code = self.city.removeprefix("cn-")
        self.city_code = code
        city_name = divisions.name_of(code)
        self.city_short = city_name.removesuffix("市")
        # A city's own districts where the table knows them (e.g. 330502 吴兴区), else the city.
        prefix = code[:4] if code.endswith("00") else code
        self.districts = [
            (c, name)
            for c, name in sorted(divisions.DIVISIONS.items())
            if c.startswith(prefix) and not c.endswith("00") and c != code
        ] or [(code, city_name)]
        self.schemes = builtin_schemes()
        self.seen: set[str] = set()

    def results(self, count: int) -> list[CreditResult]:
        types, type_weights = zip(*_TYPE_WEIGHTS, strict=True)
        return [self._result(self.rng.choices(types, type_weights)[0]) for _ in range(count)]

    def _result(self, subject_type: SubjectType) -> CreditResult:
        district_code, district_name = self._district()
        if subject_type is SubjectType.NATURAL_PERSON:
            subject = SubjectRef(SubjectIdType.RESIDENT_ID, self._resident_id(district_code))
            name = self._person_name()
        else:
            subject = SubjectRef(SubjectIdType.USCC, self._uscc(subject_type, district_code))
            name = self._name(subject_type, district_name)
        use_local = subject_type is SubjectType.ENTERPRISE and self.rng.random() < 0.2
        scheme = self.schemes[ENTERPRISE_SCHEME if use_local else MAIN_SCHEME]
        level = self.rng.choices(_LEVELS, _LEVEL_WEIGHTS)[0]
        native_level, band_score = self._native(scheme, level)
        evaluated = self.as_of - dt.timedelta(days=self._age_days(scheme.validity_days))
        evaluated_at = dt.datetime(evaluated.year, evaluated.month, evaluated.day, tzinfo=CHINA_TZ)
        valid_until = evaluated_at + dt.timedelta(days=scheme.validity_days)
        score = band_score if self.rng.random() < 0.85 else None
        flags = self._flags(level)
        indicators = self._indicators(subject_type)
        result_id = result_id_for(
            issuer_node=self.city,
            subject=subject,
            subject_name=name,
            subject_type=subject_type,
            scheme=scheme.id,
            native_level=native_level,
            native_score=score,
            level=level,
            flags=flags,
            indicators=indicators,
            evaluated_at=evaluated_at,
            valid_until=valid_until,
        )
        return CreditResult(
            result_id=result_id,
            subject=subject,
            subject_name=name,
            subject_type=subject_type,
            issuer_node=self.city,
            scheme=scheme.id,
            native_level=native_level,
            level=level,
            evaluated_at=evaluated_at,
            valid_until=valid_until,
            native_score=score,
            flags=flags,
            indicators=indicators,
        )

    def _age_days(self, validity_days: int) -> int:
        """How many days before `as_of` a result was evaluated (drawn the same way whatever
        `as_of` is, so only the dates move with it)."""
        expired = self.rng.random() < self.expired_share
        current_age = 1 + self.rng.randrange(max(1, validity_days - VALIDITY_MARGIN_DAYS))
        if expired:
            return validity_days + 1 + self.rng.randrange(_EXPIRED_SPREAD_DAYS)
        return current_age

    def _district(self) -> tuple[str, str]:
        if self.rng.random() < 0.3:  # many codes carry the city's own division
            return self.city_code, ""
        return self.rng.choice(self.districts)

    def _uscc(self, subject_type: SubjectType, division: str) -> str:
        while True:
            prefix = self.rng.choice(_USCC_PREFIX[subject_type])
            if self.rng.random() < 0.7:  # codes assigned since 2015 start with MA
                body = "MA" + "".join(self.rng.choices(_ORG_CODE_CHARS, k=6))
            else:
                body = f"{self.rng.randrange(10**8):08d}"
            code = identifiers.make_uscc(prefix + division + body + organisation_code_check(body))
            if code not in self.seen:
                self.seen.add(code)
                return code

    def _resident_id(self, division: str) -> str:
        while True:
            birth = dt.date(1950, 1, 1) + dt.timedelta(days=self.rng.randrange(365 * 55))
            serial = f"{self.rng.randrange(1000):03d}"
            code = identifiers.make_resident_id(division + birth.strftime("%Y%m%d") + serial)
            if code not in self.seen:
                self.seen.add(code)
                return code

    def _person_name(self) -> str:
        return self.rng.choice(_SURNAMES) + self.rng.choice(_GIVEN)

    def _name(self, subject_type: SubjectType, district: str) -> str:
        rng = self.rng
        place = rng.choice((self.city_short, self.city_short, "浙江", district.rstrip("区县")))
        if not place:
            place = self.city_short
        core = rng.choice(_CORES)
        if subject_type is SubjectType.ENTERPRISE:
            return f"{place}{core}{rng.choice(_TRADES)}{rng.choice(_COMPANY_SUFFIXES)}"
        if subject_type is SubjectType.INDIVIDUAL_BUSINESS:
            where = district or f"{self.city_short}市"
            return f"{where}{rng.choice(_SURNAMES)}记{rng.choice(_SHOPS)}"
        if subject_type is SubjectType.SOCIAL_ORGANIZATION:
            return f"{self.city_short}市{core}{rng.choice(_SOCIETIES)}"
        if subject_type is SubjectType.PUBLIC_INSTITUTION:
            return f"{district or self.city_short + '市'}{rng.choice(_INSTITUTIONS)}"
        return f"{district or self.city_short + '市'}{rng.choice(_AGENCIES)}"

    def _native(self, scheme: Scheme, level: CreditLevel) -> tuple[str, float]:
        """A native level of `scheme` that maps to `level`, and a score inside its band."""
        native = self.rng.choice([lv for lv in scheme.levels if lv.canonical is level])
        index = scheme.levels.index(native)
        above = scheme.levels[index - 1].min_score if index else None
        low = native.min_score if native.min_score is not None else 0.0
        high = above - 0.1 if above is not None else (scheme.score_max or low + 100.0)
        return native.name, round(self.rng.uniform(low, high), 1)

    def _flags(self, level: CreditLevel) -> tuple[str, ...]:
        rng = self.rng
        flags: list[str] = []
        if level is CreditLevel.A and rng.random() < 0.08:
            flags.append("RED_LIST")
        if (level is CreditLevel.D and rng.random() < 0.7) or (
            level is CreditLevel.C and rng.random() < 0.1
        ):
            flags.append("SERIOUS_DISHONESTY")
        if level in (CreditLevel.C, CreditLevel.D) and rng.random() < 0.2:
            flags.append("UNDER_REPAIR")
        return tuple(flags)

    def _indicators(self, subject_type: SubjectType) -> dict[str, str]:
        if subject_type is not SubjectType.ENTERPRISE or self.rng.random() > 0.3:
            return {}
        return {
            "green_rating": self.rng.choice(_GREEN_RATINGS),
            "carbon_intensity": f"{self.rng.uniform(0.05, 2.5):.2f}",  # t CO2e per 10k yuan
            "esg_score": f"{self.rng.uniform(45, 95):.1f}",
        }


# --- 双公示 penalties, list changes and licences (issue 11 §5) --------------------------------

# (categories, weight, fine range in 万元 or None)
_PENALTY_KINDS: tuple[tuple[str, int, tuple[float, float] | None], ...] = (
    ("警告", 30, None),
    ("罚款", 45, (0.1, 20.0)),
    ("罚款", 3, (100.0, 500.0)),
    ("罚款;没收违法所得", 10, (1.0, 50.0)),
    ("责令停产停业", 6, None),
    ("吊销许可证件", 6, None),
)
_VIOLATIONS = ("未按规定公示年度报告", "销售不合格产品", "违法排放污染物", "未取得许可擅自经营",
               "虚假宣传", "违反安全生产规定")  # fmt: skip


def generate_penalties(
    city: str, count: int, seed: int, as_of: dt.date, *, subjects: int | None = None
) -> Iterator[PenaltyRecord]:
    """`count` penalty records (as `shuanggongshi-cf-*` reads them) of `subjects` distinct
    subjects of `city` (default count // 4; a tenth natural persons), decided in the three
    years before `as_of`. Lazy: a million records never sit in memory at once."""
    require_node_id(city, "city")
    gen = _Generator(city, random.Random(f"{city}/penalties/{seed}"), as_of, 0.0)
    rule = builtin_rule()
    pool = [_penalty_subject(gen) for _ in range(max(1, subjects or count // 4))]
    kinds: list[tuple[str, tuple[float, float] | None]] = [(k[0], k[2]) for k in _PENALTY_KINDS]
    weights = [k[1] for k in _PENALTY_KINDS]
    rng = gen.rng
    for number in range(1, count + 1):
        subject, name = rng.choice(pool)
        (category, fines) = rng.choices(kinds, weights)[0]
        decided = as_of - dt.timedelta(days=rng.randrange(3 * 365))
        content = {
            "case_number": f"{gen.city_short}罚〔{decided.year}〕{number}号",
            "category": category,
            "violation": rng.choice(_VIOLATIONS),
            "authority": f"{gen.city_short}市{rng.choice(_AGENCIES)}",
        }
        fine = None
        if fines is not None:
            fine = decimal.Decimal(f"{rng.uniform(*fines):.2f}")
            content["fine"] = str(fine)
        severity = classify(rule, "", category, fine)
        longest = repair.add_months(decided, repair.PUBLICITY_MONTHS[severity][1])
        yield PenaltyRecord(
            record_id=record_id_for("cf", subject, (content["case_number"],)),
            subject=subject,
            subject_name=name,
            severity=severity,
            decided_on=decided,
            content=content,
            publicity_ends_on=longest - dt.timedelta(days=1),
        )


def generate_list_changes(city: str, count: int, seed: int, as_of: dt.date) -> list[ListChange]:
    """`count` serious-dishonesty list rows: entries, and for about a fifth of them a removal
    (a later row), as `serious-dishonesty-*` reads them."""
    gen = _Generator(city, random.Random(f"{city}/list/{seed}"), as_of, 0.0)
    rng = gen.rng
    changes: list[ListChange] = []
    while len(changes) < count:
        subject, name = _penalty_subject(gen)
        listed = as_of - dt.timedelta(days=400 + rng.randrange(700))
        content = {"list_reason": rng.choice(_VIOLATIONS), "list_name": "严重失信主体名单"}
        record_id = record_id_for("sd", subject, ("严重失信主体名单", listed.isoformat()))
        changes.append(
            PenaltyRecord(
                record_id, subject, name, repair.Severity.SERIOUS, listed, content,
                kind=RecordKind.SERIOUS_DISHONESTY_LIST,
            )
        )  # fmt: skip
        if len(changes) < count and rng.random() < 0.2:
            removed = listed + dt.timedelta(days=365 + rng.randrange(30))
            content = {"list_name": "严重失信主体名单", "listed_on": listed.isoformat()}
            changes.append(ListRemoval(record_id, subject, name, removed, content=content))
    return changes


def _penalty_subject(gen: _Generator) -> tuple[SubjectRef, str]:
    district_code, district_name = gen._district()
    if gen.rng.random() < 0.1:
        person = SubjectRef(SubjectIdType.RESIDENT_ID, gen._resident_id(district_code))
        return person, gen._person_name()
    subject_type = gen.rng.choice((SubjectType.ENTERPRISE, SubjectType.INDIVIDUAL_BUSINESS))
    uscc = SubjectRef(SubjectIdType.USCC, gen._uscc(subject_type, district_code))
    return uscc, gen._name(subject_type, district_name)
