"""Turning an export file's bytes into text: UTF-8 (with or without BOM), else GB18030.

Local platforms export from Excel and legacy systems in either encoding; anything that neither
decodes is rejected as a whole-file problem (row 0) instead of being guessed at.
"""

from __future__ import annotations

from adapters.problems import rejected
from node.errors import RowProblem


def decode_export(data: bytes, format_name: str) -> str:
    """Decode as UTF-8 (a leading BOM is dropped), falling back to GB18030."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as utf8_error:
        try:
            return data.decode("gb18030")
        except UnicodeDecodeError:
            problem = RowProblem(
                0,
                "file",
                f"is neither UTF-8 nor GB18030 (bad UTF-8 byte 0x{data[utf8_error.start]:02x} "
                f"at offset {utf8_error.start}); re-save the export as UTF-8",
            )
            raise rejected(format_name, [problem]) from None
