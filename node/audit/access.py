"""Who may use the auditor service: named tokens with a role, the zones they may read and
whether they may see residents' pseudonyms whole, kept hashed in the home's `auditors.toml`
(written by `creditnode auditor add|remove`, 0600, re-read when it changes).

A token is 32 random bytes, shown once when added; the file keeps its SHA-256 only (a random
256-bit secret needs no slow hash: nothing about it can be guessed). Roles: `auditor` reads
the log within its zones; `operator` also reads the access log of every auditor request and
repairs penalty records (the local platform's credit repair).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
import pathlib
import re
import secrets
import threading
import tomllib
from collections.abc import Iterable, Mapping
from typing import Any

from node import model
from node.disclosure import EVERY_ZONE, EntryScope
from node.errors import ConfigError, InvalidInput, PermissionDenied, Unauthenticated
from node.home import NodeHome, dumps_toml

FILE_NAME = "auditors.toml"
AUDITOR = "auditor"
OPERATOR = "operator"
ROLES = (AUDITOR, OPERATOR)
TOKEN_PREFIX = "cia_"
MAX_TOKEN = 128  # characters: anything longer is no token of ours
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclasses.dataclass(frozen=True, slots=True)
class Auditor:
    name: str
    role: str
    scope: EntryScope
    personal: bool
    token_sha256: str
    added_at: dt.datetime

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise InvalidInput(
                "an auditor's name is 1-64 of a-z, 0-9, '.', '_' and '-', starting with a "
                "letter or digit"
            )
        if self.role not in ROLES:
            raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
        if not _SHA256.fullmatch(self.token_sha256):
            raise InvalidInput("token_sha256 must be 64 lowercase hex digits")

    @property
    def zones_text(self) -> list[str]:
        return [EVERY_ZONE] if self.scope.every_zone else sorted(self.scope.zones)

    def require(self, role: str) -> None:
        if role == OPERATOR and self.role != OPERATOR:
            raise PermissionDenied(
                "this needs the operator role; auditors read the log, operators read who read it "
                "and repair penalty records",
                reason="ROLE_NOT_ALLOWED",
            )


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def scope_of(zones: Iterable[str]) -> EntryScope:
    zones = list(zones)
    bad = [z for z in zones if z != EVERY_ZONE and not model.SLUG_RE.match(z)]
    if bad:
        raise InvalidInput(f"{bad[0][:64]!r} is neither a zone id nor {EVERY_ZONE!r}")
    if not zones:
        raise InvalidInput(f"an auditor needs at least one zone ({EVERY_ZONE!r} for every one)")
    return EntryScope(frozenset(z for z in zones if z != EVERY_ZONE), EVERY_ZONE in zones)


class AuditorFile:
    """`auditors.toml` in a node home: read on use when it changed, written atomically."""

    def __init__(self, home: NodeHome) -> None:
        self.path: pathlib.Path = home.path / FILE_NAME
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._by_hash: dict[str, Auditor] = {}

    # --- reading

    def auditors(self) -> list[Auditor]:
        return sorted(self._current().values(), key=lambda a: a.name)

    def authenticate(self, header: str | None) -> Auditor:
        """The auditor an `Authorization: Bearer <token>` header names, or Unauthenticated
        (which never quotes the header)."""
        if header is None:
            raise Unauthenticated(
                "no token: send Authorization: Bearer <token> (from `creditnode auditor add`)",
                reason="NO_TOKEN",
            )
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN:
            raise Unauthenticated(
                "the Authorization header must be Bearer <token>", reason="BAD_TOKEN"
            )
        auditor = self._current().get(token_hash(token))
        if auditor is None:
            raise Unauthenticated(
                "this token is not known here (removed, or never added)", reason="BAD_TOKEN"
            )
        return auditor

    def _current(self) -> dict[str, Auditor]:
        with self._lock:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                self._stamp, self._by_hash = None, {}
                return self._by_hash
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            if stamp != self._stamp:
                self._by_hash = {a.token_sha256: a for a in self._read()}
                self._stamp = stamp
            return self._by_hash

    def _read(self) -> list[Auditor]:
        try:
            with self.path.open("rb") as f:
                doc = tomllib.load(f)
        except FileNotFoundError:
            return []
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{self.path}: not valid TOML ({exc})") from None
        table = doc.get("auditors", {})
        if not isinstance(table, Mapping):
            raise ConfigError(f"{self.path}: [auditors] must be a table")
        found = []
        for name, entry in table.items():
            try:
                found.append(_auditor(name, entry))
            except (InvalidInput, KeyError, TypeError, ValueError) as exc:
                detail = exc.message if isinstance(exc, InvalidInput) else "missing or bad key"
                raise ConfigError(f"{self.path}: [auditors.{name[:64]}] {detail}") from None
        return found

    # --- writing (`creditnode auditor`)

    def add(
        self,
        name: str,
        role: str,
        zones: Iterable[str],
        *,
        personal: bool,
        now: dt.datetime,
    ) -> tuple[Auditor, str]:
        """Add an auditor; returns it and its token, which exists nowhere else afterwards."""
        token = new_token()
        auditor = Auditor(name, role, scope_of(zones), personal, token_hash(token), now)
        known = self.auditors()
        if any(a.name == name for a in known):
            raise InvalidInput(f"auditor {name} exists; remove it first to issue a new token")
        self._write([*known, auditor])
        return auditor, token

    def remove(self, name: str) -> bool:
        known = self.auditors()
        kept = [a for a in known if a.name != name]
        if len(kept) == len(known):
            return False
        self._write(kept)
        return True

    def _write(self, auditors: list[Auditor]) -> None:
        doc: dict[str, Any] = {
            "auditors": {
                a.name: {
                    "role": a.role,
                    "zones": a.zones_text,
                    "personal": a.personal,
                    "token_sha256": a.token_sha256,
                    "added_at": a.added_at.isoformat(),
                }
                for a in auditors
            }
        }
        text = (
            "# Auditor service tokens (SHA-256 only), written by `creditnode auditor`.\n"
            + dumps_toml(doc)
        )
        tmp = self.path.with_name(f".{FILE_NAME}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, text.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)


def _auditor(name: str, entry: Mapping[str, Any]) -> Auditor:
    added = entry["added_at"]
    if isinstance(added, str):
        added = dt.datetime.fromisoformat(added)
    if not isinstance(added, dt.datetime) or added.tzinfo is None:
        raise ValueError("added_at")
    personal = entry.get("personal", False)
    if not isinstance(personal, bool):
        raise ValueError("personal")
    return Auditor(
        name=name,
        role=str(entry["role"]),
        scope=scope_of(entry["zones"]),
        personal=personal,
        token_sha256=str(entry["token_sha256"]),
        added_at=added,
    )
