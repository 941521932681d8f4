"""A valid canonical credit result to vary: the one the model and wire tests start from."""

from __future__ import annotations

import datetime as dt

from node import model

T0 = dt.datetime(2026, 3, 1, 8, 30, tzinfo=dt.UTC)


def make_result(**changes: object) -> model.CreditResult:
    base = model.CreditResult(
        result_id="cn-330500:r1",
        subject=model.SubjectRef(model.SubjectIdType.USCC, "91350100M000100Y43"),
        subject_name="湖州绿源新材料有限公司",
        subject_type=model.SubjectType.ENTERPRISE,
        issuer_node="cn-330500",
        scheme="zj-public-credit@2023",
        native_level="A",
        native_score=91.5,
        level=model.CreditLevel.A,
        flags=("RED_LIST",),
        indicators={"green_rating": "G2", "carbon_intensity": "low"},
        evaluated_at=T0,
        valid_until=T0 + dt.timedelta(days=365),
    )
    return base.bound(**changes) if changes else base
