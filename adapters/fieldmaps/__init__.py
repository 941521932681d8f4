"""Field maps as data: which column names mean which field, per kind of government record.

A government format comes in variants: the national 双公示 names (`CF_XDR_MC`, ...), a
province's older export, Chinese headers. Each `<id>.toml` here names, for one kind, the column
names (CSV headers, JSON keys, XML element names) of each canonical field; the files of a kind
are merged, so a new variant is a new file, not code. The kind's `primary` file (the national
names) names every field, and its first name of each is how the adapter writes and reports
it. A name that would mean two fields, a field the kind lacks or a second primary file is
refused when loaded. `load_field_maps(directory, ...)` adds an operator's directory (the node
home's `fieldmaps/`) to the shipped files.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import pathlib
import re
import tomllib
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from node.errors import ConfigError

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]*@[A-Za-z0-9.-]+\Z")
_MAX_NAME_CHARS = 64


@dataclasses.dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    required: bool = False
    keep: bool = True  # kept in the record's content (False: read, checked or dropped)


def _fields(*specs: FieldSpec) -> Mapping[str, FieldSpec]:
    return MappingProxyType({spec.name: spec for spec in specs})


# The canonical fields of each kind: what the adapters read (adapters/shuanggongshi.md).
KIND_FIELDS: Mapping[str, Mapping[str, FieldSpec]] = MappingProxyType(
    {
        "penalty": _fields(
            FieldSpec("subject_name", required=True, keep=False),
            FieldSpec("subject_category", keep=False),
            FieldSpec("uscc", keep=False),
            FieldSpec("person_id_type", keep=False),
            FieldSpec("person_id", keep=False),
            FieldSpec("legal_representative"),
            FieldSpec("legal_representative_id", keep=False),  # a person's id: never kept
            FieldSpec("case_number", required=True),
            FieldSpec("violation"),
            FieldSpec("facts"),
            FieldSpec("basis"),
            FieldSpec("category", required=True),
            FieldSpec("penalty_content"),
            FieldSpec("fine"),
            FieldSpec("confiscated"),
            FieldSpec("licence_suspended"),
            FieldSpec("decided_on", required=True, keep=False),
            FieldSpec("valid_until"),
            FieldSpec("publicity_ends_on", required=True, keep=False),
            FieldSpec("authority", required=True),
            FieldSpec("authority_code"),
            FieldSpec("source"),
            FieldSpec("source_code"),
            FieldSpec("severity", keep=False),
            FieldSpec("note"),
        ),
        "licence": _fields(
            FieldSpec("subject_name", required=True, keep=False),
            FieldSpec("subject_category", keep=False),
            FieldSpec("uscc", keep=False),
            FieldSpec("person_id_type", keep=False),
            FieldSpec("person_id", keep=False),
            FieldSpec("legal_representative"),
            FieldSpec("legal_representative_id", keep=False),
            FieldSpec("document_name"),
            FieldSpec("document_number", required=True),
            FieldSpec("licence_category"),
            FieldSpec("certificate_name"),
            FieldSpec("licence_number"),
            FieldSpec("licence_content"),
            FieldSpec("decided_on", required=True, keep=False),
            FieldSpec("valid_from", required=True, keep=False),
            FieldSpec("valid_to", keep=False),
            FieldSpec("authority", required=True),
            FieldSpec("authority_code"),
            FieldSpec("state"),
            FieldSpec("source"),
            FieldSpec("source_code"),
            FieldSpec("note"),
        ),
        "serious-dishonesty": _fields(
            FieldSpec("subject_name", required=True, keep=False),
            FieldSpec("subject_category", keep=False),
            FieldSpec("uscc", keep=False),
            FieldSpec("person_id_type", keep=False),
            FieldSpec("person_id", keep=False),
            FieldSpec("action", required=True, keep=False),
            FieldSpec("list_name"),
            FieldSpec("listed_on", required=True, keep=False),
            FieldSpec("list_reason"),
            FieldSpec("authority"),
            FieldSpec("removed_on", keep=False),
            FieldSpec("removal_reason", keep=False),
            FieldSpec("note"),
        ),
    }
)


@dataclasses.dataclass(frozen=True, slots=True)
class FieldMap:
    """The merged column names of one kind. `field_of` looks a column up (trimmed, case
    insensitive); `spelling[field]` is the primary file's name of a field."""

    kind: str
    variants: tuple[str, ...]
    names: Mapping[str, str]  # upper-cased column name -> canonical field
    spelling: Mapping[str, str]  # canonical field -> primary column name

    def field_of(self, column: str) -> str | None:
        return self.names.get(column.strip().upper())

    @property
    def fields(self) -> Mapping[str, FieldSpec]:
        return KIND_FIELDS[self.kind]


@dataclasses.dataclass(frozen=True, slots=True)
class _Variant:
    id: str
    kind: str
    primary: bool
    fields: Mapping[str, tuple[str, ...]]
    origin: str


def load_field_maps(*directories: pathlib.Path) -> Mapping[str, FieldMap]:
    """The shipped field maps merged with the `*.toml` files of `directories`, by kind."""
    return _merge([*_builtin_variants(), *(v for d in directories for v in _variants_in(d))])


@functools.cache
def builtin_field_maps() -> Mapping[str, FieldMap]:
    return _merge(_builtin_variants())


def _builtin_variants() -> list[_Variant]:
    package = importlib.resources.files(__package__)
    return [
        _parse(entry.name, entry.read_text(encoding="utf-8"), f"adapters/fieldmaps/{entry.name}")
        for entry in sorted(package.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".toml")
    ]


def _variants_in(directory: pathlib.Path) -> Iterable[_Variant]:
    if not directory.is_dir():
        raise ConfigError(f"field map directory {directory} does not exist")
    for path in sorted(directory.glob("*.toml")):
        yield _parse(path.name, path.read_text(encoding="utf-8"), str(path))


def _parse(file_name: str, text: str, origin: str) -> _Variant:
    try:
        table: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"field map {origin} is not valid TOML: {exc}") from None
    variant_id = table.get("id")
    if not isinstance(variant_id, str) or not _ID_RE.match(variant_id):
        raise ConfigError(f"field map {origin}: `id` must be like shuanggongshi-cf@national")
    if file_name != f"{variant_id}.toml":
        raise ConfigError(f"field map {origin}: the file must be named {variant_id}.toml")
    kind = table.get("kind")
    if not isinstance(kind, str) or kind not in KIND_FIELDS:
        raise ConfigError(f"field map {origin}: `kind` must be one of {', '.join(KIND_FIELDS)}")
    raw_fields = table.get("fields")
    if not isinstance(raw_fields, dict) or not raw_fields:
        raise ConfigError(f"field map {origin}: a [fields] table names the columns")
    fields: dict[str, tuple[str, ...]] = {}
    for field, names in raw_fields.items():
        if field not in KIND_FIELDS[kind]:
            known = ", ".join(KIND_FIELDS[kind])
            raise ConfigError(f"field map {origin}: {kind} has no field {field!r} ({known})")
        if isinstance(names, str):
            names = [names]
        if (
            not isinstance(names, list)
            or not names
            or not all(isinstance(n, str) and 0 < len(n.strip()) <= _MAX_NAME_CHARS for n in names)
        ):
            raise ConfigError(
                f"field map {origin}: {field} must list column names (1-{_MAX_NAME_CHARS} chars)"
            )
        fields[field] = tuple(n.strip() for n in names)
    primary = table.get("primary", False)
    if not isinstance(primary, bool):
        raise ConfigError(f"field map {origin}: `primary` is true or false")
    if primary:
        missing = [f for f in KIND_FIELDS[kind] if f not in fields]
        if missing:
            raise ConfigError(
                f"field map {origin}: a primary map names every field; missing {missing}"
            )
    return _Variant(variant_id, kind, primary, fields, origin)


def _merge(variants: Iterable[_Variant]) -> Mapping[str, FieldMap]:
    names: dict[str, dict[str, tuple[str, str]]] = {kind: {} for kind in KIND_FIELDS}
    spelling: dict[str, dict[str, str]] = {}
    ids: dict[str, list[str]] = {kind: [] for kind in KIND_FIELDS}
    seen: dict[str, str] = {}
    for variant in variants:
        if variant.id in seen:
            raise ConfigError(
                f"field map {variant.id} is given twice: {seen[variant.id]}, {variant.origin}"
            )
        seen[variant.id] = variant.origin
        ids[variant.kind].append(variant.id)
        if variant.primary:
            if variant.kind in spelling:
                raise ConfigError(
                    f"field map {variant.origin}: {variant.kind} has a primary map already"
                )
            spelling[variant.kind] = {field: ns[0] for field, ns in variant.fields.items()}
        table = names[variant.kind]
        for field, column_names in variant.fields.items():
            for name in column_names:
                key = name.upper()
                held = table.get(key)
                if held is not None and held[0] != field:
                    raise ConfigError(
                        f"field map {variant.origin}: column {name!r} would mean {field}, but "
                        f"{held[1]} has it mean {held[0]}"
                    )
                table[key] = (field, variant.origin)
    maps: dict[str, FieldMap] = {}
    for kind in KIND_FIELDS:
        if kind not in spelling:
            raise ConfigError(f"no primary field map for {kind}")
        maps[kind] = FieldMap(
            kind=kind,
            variants=tuple(ids[kind]),
            names=MappingProxyType({k: field for k, (field, _) in names[kind].items()}),
            spelling=MappingProxyType(spelling[kind]),
        )
    return MappingProxyType(maps)
