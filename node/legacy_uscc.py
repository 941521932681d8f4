"""Known legacy register codes (DESIGN.md §9): USCCs in real registers whose check character is
wrong. A node lists its own in `legacy-uscc.txt` in its home; ingest admits such a code, and a
peer's query for one is answered, only when it is listed — unlisted, a wrong check character is
a typo. `parse_legacy_codes` is pure; `load_legacy_codes` is the file's one reader.
"""

from __future__ import annotations

import pathlib

from node import identifiers
from node.errors import ConfigError, InvalidIdentifier
from node.home import NodeHome

LEGACY_USCC_FILE = "legacy-uscc.txt"
MAX_LEGACY_CODES = 1_000_000
# A million codes with a comment beside each fit; the file is read whole, so it is bounded.
MAX_FILE_BYTES = 64 * 1024 * 1024
_BOM = b"\xef\xbb\xbf"


def parse_legacy_codes(data: bytes, source: str = LEGACY_USCC_FILE) -> frozenset[str]:
    """The codes `data` lists: UTF-8, one code a line, `#` to the end of a line a comment,
    blank lines ignored. A code is normalised as any USCC (upper case, spaces dropped) and must
    have the USCC shape except the check character. A ConfigError names `source` and the line
    and quotes no more of it than one character or the division."""
    codes: set[str] = set()
    listed = 0
    for number, line in enumerate(data.removeprefix(_BOM).split(b"\n"), start=1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{source} line {number}: not UTF-8 text") from None
        text = text.partition("#")[0].strip()
        if not text:
            continue
        listed += 1
        if listed > MAX_LEGACY_CODES:
            raise ConfigError(f"{source} lists more than {MAX_LEGACY_CODES:,} codes")
        try:
            codes.add(identifiers.validate_uscc_shape(text))
        except InvalidIdentifier as exc:
            raise ConfigError(
                f"{source} line {number}: not a legacy register code: {exc.message}"
            ) from None
    return frozenset(codes)


def read_legacy_codes(path: pathlib.Path) -> frozenset[str]:
    """The codes listed in the file at `path`; none when there is no such file."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return frozenset()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{path} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    return parse_legacy_codes(data, str(path))


def load_legacy_codes(home: NodeHome) -> frozenset[str]:
    """The node's legacy register codes, from `legacy-uscc.txt` in its home."""
    return read_legacy_codes(home.path / LEGACY_USCC_FILE)
