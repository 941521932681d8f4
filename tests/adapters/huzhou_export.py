"""Huzhou CSV exports written inline (adapters/huzhou.md): the header a city's register
exports, and a file of given rows under it, encoded as the register writes it."""

from __future__ import annotations

from node import identifiers

CITY = "cn-330500"
USCC = identifiers.make_uscc("91330502MA2B3C4D1")
HEADER = "TYSHXYDM,QYMC,ZTLX,PJTX,PJDJ,PJFS,PJRQ,YXQZ,SXBZ"


def huzhou_csv(*rows: str, header: str = HEADER) -> bytes:
    """A huzhou-csv file: `header`, then `rows`, CRLF line ends, UTF-8."""
    return "\r\n".join((header, *rows)).encode("utf-8")
