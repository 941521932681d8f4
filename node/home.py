"""A node's home directory: node.toml, keys/ and data/ (DESIGN.md §2). Floor 3: file I/O.

node.toml is the one configuration file; this module reads it with tomllib and rewrites only
the tables `NodeConfig` owns, keeping every other table (zones, policy, …) as it was.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import pathlib
import stat
import tomllib
from collections.abc import Mapping
from typing import Any

from node.config import NodeConfig
from node.errors import ConfigError

CONFIG_FILE = "node.toml"
DB_URL_ENV = "CREDITNODE_DB_URL"
PRIVATE_DIRECTORY_MODE = 0o700


class NodeHome:
    """The directory holding one node's configuration, keys and data."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        # abspath also folds `..` so the SQLite URL is a clean absolute path.
        self.path = pathlib.Path(os.path.abspath(os.path.expanduser(path)))

    def __repr__(self) -> str:
        return f"NodeHome({str(self.path)!r})"

    @property
    def config_file(self) -> pathlib.Path:
        return self.path / CONFIG_FILE

    @property
    def keys_dir(self) -> pathlib.Path:
        return self.path / "keys"

    @property
    def data_dir(self) -> pathlib.Path:
        return self.path / "data"

    def resolve(self, path: str) -> pathlib.Path:
        """A path from node.toml: relative ones are relative to the home."""
        return self.path / pathlib.Path(path).expanduser()

    def has_config(self) -> bool:
        return self.config_file.is_file()

    def ensure_layout(self) -> None:
        """Create the home, keys/ (private keys) and data/ (the store, resident ids in it).
        keys/ and data/ are made 0700 whatever they were, or ConfigError says why not."""
        self.path.mkdir(parents=True, exist_ok=True)
        make_private_directory(self.keys_dir)
        make_private_directory(self.data_dir)

    def load_document(self) -> dict[str, Any]:
        """node.toml parsed as a whole, for modules that own other tables of it."""
        try:
            with self.config_file.open("rb") as f:
                return tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(
                f"no {CONFIG_FILE} in {self.path}: run `creditnode init` there, or pass --home "
                "(or set CREDITNODE_HOME) to the node's home"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{self.config_file}: not valid TOML: {exc}") from None
        except UnicodeDecodeError as exc:  # TOML is UTF-8 (toml.io §Spec)
            raise ConfigError(
                f"{self.config_file}: not UTF-8 text (byte {exc.start}); TOML files are UTF-8"
            ) from None
        except OSError as exc:
            raise ConfigError(f"cannot read {self.config_file}: {exc.strerror}") from None

    def load_config(self) -> NodeConfig:
        return NodeConfig.from_document(self.load_document(), source=str(self.config_file))

    def write_config(self, config: NodeConfig) -> None:
        """Write the node's tables into node.toml atomically, keeping any other tables."""
        doc: dict[str, Any] = self.load_document() if self.has_config() else {}
        doc.update(config.to_document())
        self.path.mkdir(parents=True, exist_ok=True)
        text = "# creditnode node configuration (DESIGN.md §2)\n" + dumps_toml(doc)
        tmp = self.config_file.with_name(f".{CONFIG_FILE}.tmp")
        with tmp.open("w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.config_file)

    def db_url(self, config: NodeConfig | None = None) -> str:
        """$CREDITNODE_DB_URL, else node.toml's db_url, else SQLite at <home>/data/node.db."""
        from_env = os.environ.get(DB_URL_ENV)
        if from_env:
            return from_env
        if config is None and self.has_config():
            config = self.load_config()
        if config is not None and config.db_url:
            return config.db_url
        return f"sqlite:///{self.data_dir / 'node.db'}"


def make_private_directory(path: pathlib.Path) -> None:
    """Create `path` with mode 0700, or narrow an existing directory to 0700.

    Raises ConfigError when it is not a directory or its mode cannot be changed (another
    user owns it): a directory others can read must not hold this node's data."""
    try:
        path.mkdir(mode=PRIVATE_DIRECTORY_MODE, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"{path} exists and is not a directory; move it away") from None
    if os.name != "posix":
        return  # Windows has no mode bits: access is the directory's ACL
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode == PRIVATE_DIRECTORY_MODE:
        return
    try:
        path.chmod(PRIVATE_DIRECTORY_MODE)
    except OSError as exc:
        raise ConfigError(
            f"{path} has mode {mode:04o} and cannot be made {PRIVATE_DIRECTORY_MODE:04o} "
            f"({exc.strerror}); it must be private to the user running the node: have its "
            f"owner run `chmod 700 {path}`, or move it away"
        ) from None


# --- a small TOML writer for the value types node.toml uses ---------------------------------


def dumps_toml(doc: Mapping[str, Any]) -> str:
    """Serialise a mapping of tables (and top-level values) as TOML that tomllib reads back."""
    lines: list[str] = []
    _emit_table(doc, [], lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _emit_table(table: Mapping[str, Any], path: list[str], lines: list[str]) -> None:
    scalars = {k: v for k, v in table.items() if not _is_table(v) and not _is_table_array(v)}
    if path and (scalars or not any(_is_table(v) for v in table.values())):
        lines.extend(["", f"[{_dotted(path)}]"])
    for key, value in scalars.items():
        lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in table.items():
        if _is_table(value):
            _emit_table(value, [*path, key], lines)
        elif _is_table_array(value):
            for item in value:
                lines.extend(["", f"[[{_dotted([*path, key])}]]"])
                for k, v in item.items():
                    if _is_table(v) or _is_table_array(v):
                        raise ConfigError(f"cannot write nested table {k!r} inside [[{key}]]")
                    lines.append(f"{_key(k)} = {_value(v)}")


def _is_table(value: Any) -> bool:
    return isinstance(value, Mapping)


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _dotted(path: list[str]) -> str:
    return ".".join(_key(p) for p in path)


def _key(key: str) -> str:
    if key and all(c.isascii() and (c.isalnum() or c in "-_") for c in key):
        return key
    return _string(key)


def _string(value: str) -> str:
    # JSON string escapes are valid TOML basic-string escapes; TOML also forbids raw DEL.
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise ConfigError(f"cannot write {type(value).__name__} value {value!r} to TOML")
