"""node.toml's zone policy, followed while the node runs (floor 3: file I/O; DESIGN.md §8
"reloaded without a restart").

`PolicyFile.check` re-reads node.toml when its stamp (mtime, size, inode) changed, or when
forced (SIGHUP), and returns the new policy. A file that is not valid TOML, or whose policy or
other tables are invalid, is refused with one log line naming the fault, and the policy in
force stays. Only `[zones.*]` and `[rate_limits]` take effect at once; a change to another
table is logged as waiting for the next restart.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from typing import Any

from node import policy as policies
from node.config import NodeConfig
from node.errors import CreditNodeError
from node.home import NodeHome
from node.serving_config import ServingConfig

log = logging.getLogger(__name__)

RELOADED_TABLES = frozenset({"zones", "rate_limits"})


@dataclasses.dataclass(frozen=True, slots=True)
class FileStamp:
    """What changes when a file is edited in place or replaced."""

    mtime_ns: int
    size: int
    inode: int

    @classmethod
    def of(cls, result: os.stat_result) -> FileStamp:
        return cls(result.st_mtime_ns, result.st_size, result.st_ino)


class PolicyFile:
    """The policy in force and the node.toml document it came from. `document` and `policy`
    are what the node started with (read before this is made: the first `check` compares
    documents, not stamps, so an edit in between is still seen)."""

    def __init__(self, home: NodeHome, document: Mapping[str, Any], policy: policies.Policy):
        self.home = home
        self.policy = policy
        self._document = dict(document)
        self._stamp: FileStamp | None = None
        self.last_error: str | None = None  # why the last changed file was refused

    def check(self, *, force: bool = False) -> policies.Policy | None:
        """The new policy when node.toml changed and holds a good one; None when it is
        unchanged, or changed only outside the policy, or refused (then logged)."""
        path = self.home.config_file
        try:
            stamp = FileStamp.of(os.stat(path))
        except OSError as exc:
            reason = f"cannot read {path}: {exc.strerror}"
            if reason == self.last_error and not force:
                return None  # said once already
            self._stamp = None
            self._refuse(reason)
            return None
        if stamp == self._stamp and not force:
            return None
        self._stamp = stamp
        try:
            document = self.home.load_document()
            if document == self._document:
                self.last_error = None
                if force:
                    log.info("%s: unchanged; the configuration in force stays", path)
                return None
            source = str(path)
            # Everything a restart would read must hold, or the next restart fails.
            NodeConfig.from_document(document, source=source)
            ServingConfig.from_document(document, source)
            policy = policies.policy_from_mapping(document, source)
        except CreditNodeError as exc:
            self._refuse(exc.message)
            return None
        self.last_error = None
        waiting = sorted(
            key
            for key in set(document) | set(self._document)
            if key not in RELOADED_TABLES and document.get(key) != self._document.get(key)
        )
        if waiting:
            log.warning(
                "%s: [%s] changed; it takes effect when serve restarts",
                path,
                "], [".join(waiting),
            )
        self._document = document
        if policy == self.policy:
            return None
        self.policy = policy
        log.info("%s: zone policy reloaded; zones served: %s", path, ", ".join(policy.zones))
        return policy

    def _refuse(self, reason: str) -> None:
        self.last_error = reason
        log.error(
            "%s: changed configuration refused, the one in force stays: %s",
            self.home.config_file,
            reason,
        )
