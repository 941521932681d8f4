"""The deployable set is locked (issue 9 §8): `requirements.lock` pins every runtime
dependency of pyproject.toml, at a version its floor admits, with hashes to check it by."""

from __future__ import annotations

import pathlib
import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = pathlib.Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)")


def _pins() -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) from the lock file."""
    pins: dict[str, tuple[str, list[str]]] = {}
    current = ""
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        match = PIN.match(line)
        if match:
            current = canonicalize_name(match[1])
            pins[current] = (match[2], [])
        elif line.strip().startswith("--hash=sha256:") and current:
            pins[current][1].append(line.strip().removeprefix("--hash=sha256:").rstrip(" \\"))
    return pins


def test_every_runtime_dependency_is_pinned_within_its_floor_with_hashes() -> None:
    """issue 9 §8: `make demo` installs the lock with --require-hashes; a dependency added to
    pyproject without `make lock` would make that install fail on a fresh clone."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = _pins()
    for spec in pyproject["project"]["dependencies"]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not in requirements.lock: run make lock"
        version, hashes = pins[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{name}=={version} in the lock is outside pyproject's {requirement.specifier}"
        )
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), name
    for pinned, (_, hashes) in pins.items():
        assert hashes, f"{pinned} is pinned without a hash"
