"""Avro single-object encoding over the versioned schemas in `schemas/*.avsc`.

Wire format (Avro spec, "Single-object encoding"): the marker bytes C3 01, then the 8-byte
little-endian CRC-64-AVRO (Rabin) fingerprint of the writer schema's Parsing Canonical Form,
then the Avro binary body. A reader looks the fingerprint up among every schema version it
knows and resolves the body into the *latest* version of the record it expects, so producers
and consumers can be upgraded one at a time.

Schema files are named `<RecordName>.v<N>.avsc` (e.g. `BusinessEvent.v1.avsc`); every version
stays in the directory forever, because data written with it may still be in a topic.

Decisions worth knowing:

* Timestamps are declared as plain Avro `long` with the doc "epoch milliseconds UTC", not as
  `{"type": "long", "logicalType": "timestamp-millis"}`: fastavro 1.13 turns timestamp-millis
  into `datetime` on read (checked), which costs time on the hot path and would break
  `encode(decode(x)) == x` for the int-millis domain values. Parsing Canonical Form drops
  `logicalType`, so the choice does not change any fingerprint or byte on the wire; a Java reader
  sees exactly what it would see with the logical type.
* Union branches are explicit: `decode` uses fastavro's `return_record_name=True` with
  `return_record_name_override=True`, so a union of several records (BusinessEvent.payload)
  decodes as `(full record name, fields)`, e.g. `("herald.v1.FlightDelay", {...})`, or None,
  while a `[null, record]` union (BusinessEvent.offer) decodes as the plain dict or None.
  `encode` accepts the same shapes (fastavro's tuple notation), so `encode(decode(b)) == b`.
* `encode` checks the record before writing, because fastavro's fast writer silently truncates
  1.5 to 1, writes 2**40 into an Avro `int` and writes "abc" as an array of characters; fields
  the schema lacks are rejected too (a typo would otherwise drop a value and write the field's
  default). fastavro's own `validate` does this but costs ~40 us per Delivery, more than the
  write itself, so each schema is compiled once into a tree of small check functions (~3 us).
* Error messages name the record, the fingerprint, byte lengths, the offending field's path
  (names only) and the fastavro exception type, never its message: fastavro quotes field values,
  and values can be phone numbers. The original exception is not chained (`from None`), so a
  logged traceback cannot leak it either.
* Known gap in fastavro 1.13.1 (the same bug was reported against apache/avro's Python decoder):
  a negative enum symbol or union branch index in a body is not rejected but wraps around like
  a Python list index. Only a non-conforming writer can produce that under a valid fingerprint.

Measured on the 2-core development machine (CPython 3.11, fastavro 1.13.1 compiled extension,
the 17-field, 292-byte Delivery of `_sample_delivery`; best of 5 x 50k calls, rerun with
`python -c 'from pipeline.codec.avro import _measure; _measure()'`): encode 17.6 us (of which
the record check 3.6 us, fastavro's writer ~13 us), decode 13.5 us (fastavro's reader ~11.5 us).
With other work on the machine the figures spread up to encode ~25 us, decode ~17 us.
"""

from __future__ import annotations

import copy
import functools
import io
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from pipeline.errors import ConfigError, HeraldError

MAGIC = b"\xc3\x01"
FINGERPRINT_LENGTH = 8
HEADER_LENGTH = len(MAGIC) + FINGERPRINT_LENGTH
SCHEMAS_DIR_ENV = "HERALD_SCHEMAS_DIR"

_FILE_NAME = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)\.v(?P<version>[1-9][0-9]*)\.avsc")

Record = dict[str, Any]
_Reader = Callable[[io.BytesIO], Record]


class CodecError(HeraldError):
    """A record could not be encoded or decoded; retrying the same bytes cannot help."""


class NotSingleObjectEncoded(CodecError):
    """The bytes do not start with the C3 01 marker and a full fingerprint."""


class UnknownFingerprint(CodecError):
    """The writer schema's fingerprint is not among the registered schema versions."""


class WrongRecordType(CodecError):
    """The fingerprint names a schema of another record than the one expected."""


class MalformedBody(CodecError):
    """The body does not decode with the writer schema (truncated, corrupt or trailing bytes)."""


class InvalidRecord(CodecError):
    """The record to encode does not fit the schema."""


class SchemaLoadError(ConfigError):
    """A schema file is missing, misnamed or not a valid Avro schema."""


@dataclass(frozen=True, slots=True, eq=False)
class SchemaVersion:
    """One parsed schema file: a version of one record."""

    name: str  # full name, e.g. "herald.v1.BusinessEvent"
    version: int
    fingerprint: bytes  # the 8 bytes as they appear on the wire
    canonical_form: str
    schema: dict[str, Any]  # parsed by fastavro once, reused for every record
    declared: dict[str, Any]  # the file's JSON, as written (docs, defaults, aliases)
    source: str  # where it was loaded from, for error messages
    check: _Check  # raises _Mismatch when a record to encode does not fit `schema`

    @property
    def label(self) -> str:
        """Name the version in error messages: name, version and fingerprint."""
        return f"{self.name} v{self.version} (fingerprint {self.fingerprint.hex()})"

    @property
    def header(self) -> bytes:
        """Return the single-object header that precedes bodies written with this version."""
        return MAGIC + self.fingerprint


def load_schema_version(path: Path) -> SchemaVersion:
    """Parse one `<Name>.v<N>.avsc` file into a SchemaVersion."""
    match = _FILE_NAME.fullmatch(path.name)
    if match is None:
        raise SchemaLoadError(f"{path}: schema files must be named <RecordName>.v<N>.avsc")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        # A fresh named-types table per file: files repeat shared types (Template, Category...)
        # and two versions of one record define the same names differently.
        parsed = parse_schema(raw, {})
    except Exception as exc:  # json and fastavro raise many types; all mean "bad file"
        raise SchemaLoadError(f"{path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(parsed, dict) or parsed.get("type") != "record":
        raise SchemaLoadError(f"{path}: the top level must be a record schema")
    full_name = str(parsed["name"])
    if full_name.rsplit(".", 1)[-1] != match["name"]:
        raise SchemaLoadError(f"{path}: file name does not match record name {full_name}")
    canonical = to_parsing_canonical_form(parsed)
    return SchemaVersion(
        name=full_name,
        version=int(match["version"]),
        fingerprint=bytes.fromhex(_fastavro_fingerprint(canonical, "CRC-64-AVRO")),
        canonical_form=canonical,
        schema=parsed,
        declared=raw,
        source=str(path),
        check=_compile_check(parsed, {}),
    )


class SchemaRegistry:
    """Every known version of every record, indexed by name and by wire fingerprint."""

    def __init__(self, versions: Iterable[SchemaVersion]) -> None:
        """Index the given schema versions; two files claiming one (name, version) is an error."""
        by_name: dict[str, dict[int, SchemaVersion]] = {}
        for v in versions:
            same_name = by_name.setdefault(v.name, {})
            if v.version in same_name:
                raise SchemaLoadError(
                    f"{v.name} v{v.version} is defined twice: "
                    f"{same_name[v.version].source} and {v.source}"
                )
            same_name[v.version] = v
        self._versions: dict[str, tuple[SchemaVersion, ...]] = {
            name: tuple(vs[k] for k in sorted(vs)) for name, vs in by_name.items()
        }
        self._latest: dict[str, SchemaVersion] = {n: vs[-1] for n, vs in self._versions.items()}
        # Versions that differ only in docs, defaults or aliases share a canonical form and so a
        # fingerprint; ascending order makes the newest of them win, which is the one readers use.
        self._by_fingerprint: dict[bytes, SchemaVersion] = {
            v.fingerprint: v for vs in self._versions.values() for v in vs
        }
        # Short names ("Delivery") are accepted when they are unambiguous across namespaces.
        short: dict[str, list[str]] = {}
        for name in self._versions:
            short.setdefault(name.rsplit(".", 1)[-1], []).append(name)
        self._aliases: dict[str, str] = {n: n for n in self._versions}
        self._aliases.update({s: ns[0] for s, ns in short.items() if len(ns) == 1})
        self._readers: dict[tuple[bytes, str], _Reader] = {}

    @classmethod
    def from_directory(cls, path: str | os.PathLike[str]) -> SchemaRegistry:
        """Load every `*.avsc` file of a directory."""
        directory = Path(path)
        if not directory.is_dir():
            raise SchemaLoadError(f"{directory}: not a directory of Avro schemas")
        files = sorted(directory.glob("*.avsc"))
        if not files:
            raise SchemaLoadError(f"{directory}: no *.avsc files")
        return cls(load_schema_version(f) for f in files)

    def names(self) -> tuple[str, ...]:
        """Return the full names of all registered records, sorted."""
        return tuple(sorted(self._versions))

    def versions(self, name: str) -> tuple[SchemaVersion, ...]:
        """Return every version of a record, oldest first."""
        return self._versions[self._full_name(name)]

    def latest(self, name: str) -> SchemaVersion:
        """Return the highest version of a record: the one written and read into."""
        return self._latest[self._full_name(name)]

    def writer_of(self, data: bytes) -> SchemaVersion:
        """Return the schema version that wrote a single-object encoded message."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise NotSingleObjectEncoded(f"expected bytes, got {type(data).__name__}")
        if len(data) < HEADER_LENGTH or data[:2] != MAGIC:
            raise NotSingleObjectEncoded(
                f"{len(data)} bytes do not start with C3 01 and an 8-byte fingerprint"
            )
        fp = bytes(data[2:HEADER_LENGTH])
        try:
            return self._by_fingerprint[fp]
        except KeyError:
            raise UnknownFingerprint(
                f"fingerprint {fp.hex()} of a {len(data)}-byte message is not registered"
            ) from None

    def encode(self, name: str, record: Mapping[str, Any], *, check: bool = True) -> bytes:
        """Encode a record with the latest version of its schema, single-object framed.

        `check=False` skips the field-by-field check (half the cost) for records Herald
        builds itself from records it decoded; fastavro still refuses what cannot be written.
        """
        schema = self.latest(name)
        try:
            if check:
                schema.check(record)
        except _Mismatch as exc:
            raise InvalidRecord(
                f"{schema.label}: field {exc.path or '(record)'} does not fit the schema"
            ) from None
        out = io.BytesIO()
        out.write(MAGIC)
        out.write(schema.fingerprint)
        try:
            # No strict=/strict_allow_default=: the check above already rejects unknown and
            # missing fields, and fastavro's strict mode costs another ~1 us per record.
            schemaless_writer(out, schema.schema, record)
        except Exception as exc:  # whatever the check missed: ValueError, TypeError, ...
            raise InvalidRecord(
                f"{schema.label}: record does not fit the schema ({type(exc).__name__})"
            ) from None
        return out.getvalue()

    def decode(self, name: str, data: bytes) -> Record:
        """Decode a single-object encoded message into the latest version of record `name`."""
        writer = self.writer_of(data)
        key = (writer.fingerprint, name)
        read = self._readers.get(key)
        if read is None:
            read = self._readers[key] = self._reader(writer, name)
        fo = io.BytesIO(data)
        fo.seek(HEADER_LENGTH)
        try:
            record = read(fo)
        except Exception as exc:  # EOFError, UnicodeDecodeError, IndexError, ...
            raise MalformedBody(
                f"{writer.label}: {len(data)}-byte message does not decode ({type(exc).__name__})"
            ) from None
        if fo.tell() != len(data):
            raise MalformedBody(
                f"{writer.label}: "
                f"{len(data) - fo.tell()} trailing bytes after the body of a "
                f"{len(data)}-byte message"
            )
        return record

    def _full_name(self, name: str) -> str:
        try:
            return self._aliases[name]
        except KeyError:
            # A programming error, not bad data: deliberately not a CodecError, so it is not
            # routed to dead-letters record after record.
            raise KeyError(f"no schema registered for record {name!r}") from None

    def _reader(self, writer: SchemaVersion, name: str) -> _Reader:
        """Build the decode function for bodies written by `writer`, read as record `name`."""
        reader = self.latest(name)
        if writer.name != reader.name:
            raise WrongRecordType(
                f"expected {reader.name}, fingerprint {writer.fingerprint.hex()} "
                f"is {writer.name} v{writer.version}"
            )
        # Passing no reader schema when nothing changed skips fastavro's schema resolution
        # and its deep comparison of the two schemas on every call.
        writer_schema = writer.schema
        reader_schema = None if reader is writer else reader.schema

        def read(fo: io.BytesIO) -> Record:
            # The top level is always a record, so fastavro's AvroMessage is a dict here.
            return cast(Record, schemaless_reader(fo, writer_schema, reader_schema, True, True))

        return read


class LastFieldApart:
    """Write and read a record's last field apart from the rest, same bytes on the wire.

    Avro writes a record as its fields one after another, nothing between them, so the
    bytes of a record whose last field is written on its own and appended are the bytes
    of the whole record. Ingest writes an event once for all the candidate batches it
    makes of it, and decide, which cannot know where a field ends without decoding what
    comes before it, finds the last field's bytes right after the others and decodes an
    event once however many batches carry it.
    """

    def __init__(self, registry: SchemaRegistry, name: str) -> None:
        self.version = registry.latest(name)
        record = copy.deepcopy(self.version.declared)  # defaults kept: encode fills them
        *rest, last = record["fields"]
        self.last_name = last["name"]
        # The last field alone, as a record of one field (the same bytes) in the record's
        # namespace; it may use named types the other fields define, not the record itself.
        alone = {**record, "name": f"{record['name']}Last", "fields": [last]}
        named: dict[str, Any] = {}
        self._rest = parse_schema({**record, "fields": rest}, named)
        self._last = parse_schema(alone, named)
        checks: dict[str, _Check] = {}
        self._check_rest = _compile_check(self._rest, checks)
        self._check_last = _compile_check(self._last, checks)

    def encode_last(self, value: Any) -> bytes:
        """Write the last field's value alone (checked), to append to records by `encode`."""
        try:
            self._check_last({self.last_name: value})
        except _Mismatch as exc:
            raise InvalidRecord(
                f"{self.version.label}: field {exc.path or self.last_name} does not fit the schema"
            ) from None
        return self._write(self._last, {self.last_name: value})

    def encode(self, rest: Mapping[str, Any], last: bytes, *, check: bool = True) -> bytes:
        """Write a record from its other fields (checked) and its last field's bytes.

        `check=False` skips the field check, as `SchemaRegistry.encode` does.
        """
        try:
            if check:
                self._check_rest(rest)
        except _Mismatch as exc:
            raise InvalidRecord(
                f"{self.version.label}: field {exc.path or '(record)'} does not fit the schema"
            ) from None
        return self.version.header + self._write(self._rest, rest) + last

    def split(self, data: bytes) -> tuple[Record, bytes]:
        """Return the other fields of a record this version wrote, and its last field's bytes."""
        if data[2:HEADER_LENGTH] != self.version.fingerprint or data[:2] != MAGIC:
            raise WrongRecordType(f"{self.version.label}: the message was written by another")
        fo = io.BytesIO(data)
        fo.seek(HEADER_LENGTH)
        rest = self._read(fo, self._rest, f"{len(data)}-byte message")
        return rest, data[fo.tell() :]

    def decode_last(self, data: bytes) -> Any:
        """Decode the last field's bytes `split` returned; all of them, nothing more."""
        fo = io.BytesIO(data)
        value = self._read(fo, self._last, f"field {self.last_name}")
        if fo.tell() != len(data):
            raise MalformedBody(
                f"{self.version.label}: {len(data) - fo.tell()} trailing bytes after the body"
            )
        return value[self.last_name]

    def _read(self, fo: io.BytesIO, schema: Any, what: str) -> Record:
        try:
            return cast(Record, schemaless_reader(fo, schema, None, True, True))
        except Exception as exc:  # EOFError, UnicodeDecodeError, IndexError, ...
            raise MalformedBody(
                f"{self.version.label}: {what} does not decode ({type(exc).__name__})"
            ) from None

    def _write(self, schema: Any, value: Any) -> bytes:
        out = io.BytesIO()
        try:
            schemaless_writer(out, schema, value)
        except Exception as exc:  # whatever the check missed
            raise InvalidRecord(
                f"{self.version.label}: record does not fit the schema ({type(exc).__name__})"
            ) from None
        return out.getvalue()


# --- Record checks for encode -------------------------------------------------------------------
# Compiled once per schema into closures; each raises _Mismatch with the path of the offending
# field (a field name, never a value). They mirror what fastavro's writer accepts, minus its
# silent coercions; logical types are not used by Herald, so `logicalType` is ignored.

_Check = Callable[[Any], None]
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1


class _Mismatch(Exception):
    """A value does not fit its schema; `path` locates it by field names only."""

    def __init__(self, path: str = "") -> None:
        super().__init__(path)
        self.path = path


def _check_null(v: Any) -> None:
    if v is not None:
        raise _Mismatch


def _check_boolean(v: Any) -> None:
    if v is not True and v is not False:
        raise _Mismatch


def _check_int(v: Any) -> None:
    # bool is an int subclass and fastavro would write True as 1: reject it.
    if isinstance(v, bool) or not isinstance(v, int) or not _INT_MIN <= v <= _INT_MAX:
        raise _Mismatch


def _check_long(v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or not _LONG_MIN <= v <= _LONG_MAX:
        raise _Mismatch


def _check_float(v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise _Mismatch


def _check_bytes(v: Any) -> None:
    if not isinstance(v, bytes | bytearray):
        raise _Mismatch


def _check_string(v: Any) -> None:
    if not isinstance(v, str):
        raise _Mismatch


_PRIMITIVE_CHECKS: dict[str, _Check] = {
    "null": _check_null,
    "boolean": _check_boolean,
    "int": _check_int,
    "long": _check_long,
    "float": _check_float,
    "double": _check_float,
    "bytes": _check_bytes,
    "string": _check_string,
}


def _compile_check(schema: Any, named: dict[str, _Check]) -> _Check:
    """Build the check for one fastavro-parsed schema; `named` collects named types."""
    if isinstance(schema, str):
        primitive = _PRIMITIVE_CHECKS.get(schema)
        if primitive is not None:
            return primitive
        ref = schema

        def check_ref(v: Any) -> None:
            named[ref](v)  # looked up when called, so recursive types work

        return named.get(ref, check_ref)
    if isinstance(schema, list):
        return _compile_union(schema, named)
    kind = schema["type"]
    if kind == "record":
        return _compile_record(schema, named)
    if kind == "enum":
        symbols = frozenset(schema["symbols"])

        def check_enum(v: Any) -> None:
            if not isinstance(v, str) or v not in symbols:
                raise _Mismatch

        named[schema["name"]] = check_enum
        return check_enum
    if kind == "fixed":
        size = schema["size"]

        def check_fixed(v: Any) -> None:
            if not isinstance(v, bytes | bytearray) or len(v) != size:
                raise _Mismatch

        named[schema["name"]] = check_fixed
        return check_fixed
    if kind == "array":
        item = _compile_check(schema["items"], named)

        def check_array(v: Any) -> None:
            if not isinstance(v, list | tuple):
                raise _Mismatch
            for x in v:
                try:
                    item(x)
                except _Mismatch as m:
                    raise _Mismatch(f"[]{m.path}") from None

        return check_array
    if kind == "map":
        value = _compile_check(schema["values"], named)

        def check_map(v: Any) -> None:
            if not isinstance(v, Mapping):
                raise _Mismatch
            for k, x in v.items():
                if not isinstance(k, str):
                    raise _Mismatch("{}")
                try:
                    value(x)
                except _Mismatch as m:
                    raise _Mismatch(f"{{}}{m.path}") from None

        return check_map
    # A primitive written as {"type": "long", ...} (with doc or logicalType).
    return _compile_check(kind, named)


def _compile_record(schema: dict[str, Any], named: dict[str, _Check]) -> _Check:
    fields: list[tuple[str, _Check, bool]] = []

    def check_record(v: Any) -> None:
        if type(v) is not dict and not isinstance(v, Mapping):
            raise _Mismatch
        present = 0
        for name, check, optional in fields:
            if name in v:
                present += 1
                try:
                    check(v[name])
                except _Mismatch as m:
                    sep = "" if m.path[:1] in ("", "[", "{") else "."
                    raise _Mismatch(f"{name}{sep}{m.path}") from None
            elif not optional:
                raise _Mismatch(f"{name} (missing)")
        if present != len(v):
            raise _Mismatch("(a field the schema does not have)")

    named[schema["name"]] = check_record  # before the fields: a record may contain itself
    fields.extend(
        (f["name"], _compile_check(f["type"], named), "default" in f) for f in schema["fields"]
    )
    return check_record


def _branch_name(branch: Any) -> str:
    """Name a union branch the way fastavro's tuple notation does."""
    if isinstance(branch, dict):
        kind = branch["type"]
        return str(branch["name"]) if kind in ("record", "enum", "fixed") else str(kind)
    return str(branch)


def _compile_union(schema: list[Any], named: dict[str, _Check]) -> _Check:
    has_null = "null" in schema
    others = [b for b in schema if b != "null"]
    by_name = {_branch_name(b): _compile_check(b, named) for b in others}
    checks = tuple(by_name.values())

    def check_union(v: Any) -> None:
        if v is None:
            if has_null:
                return
            raise _Mismatch
        if isinstance(v, tuple):
            # fastavro reads any tuple in a union as (branch name, value): mirror it exactly.
            if len(v) != 2 or not isinstance(v[0], str) or v[0] not in by_name:
                raise _Mismatch("(unknown union branch)")
            try:
                by_name[v[0]](v[1])
            except _Mismatch as m:
                raise _Mismatch(f"<{v[0]}>{m.path and '.' + m.path}") from None
            return
        for check in checks:
            try:
                check(v)
            except _Mismatch:
                continue
            return
        raise _Mismatch

    return check_union


def schemas_dir() -> Path:
    """Find the schema directory: $HERALD_SCHEMAS_DIR, the source checkout, or the install."""
    # An explicit setting wins; then `schemas/` beside `pipeline/` in a source checkout or an
    # editable install; then `<prefix>/share/herald/schemas`, where a wheel puts it when
    # pyproject declares `[tool.setuptools.data-files] "share/herald/schemas" = ["schemas/*.avsc"]`.
    configured = os.environ.get(SCHEMAS_DIR_ENV)
    if configured:
        return Path(configured)
    candidates = (
        Path(__file__).resolve().parents[2] / "schemas",
        Path(sys.prefix) / "share" / "herald" / "schemas",
    )
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise SchemaLoadError(
        f"no schema directory found; set {SCHEMAS_DIR_ENV} (looked in "
        + ", ".join(str(c) for c in candidates)
        + ")"
    )


@functools.cache
def default_registry() -> SchemaRegistry:
    """Return the registry of the repository's schemas, loaded once per process."""
    return SchemaRegistry.from_directory(schemas_dir())


def encode(name: str, record: Mapping[str, Any]) -> bytes:
    """Encode a record with the default registry (see SchemaRegistry.encode)."""
    return default_registry().encode(name, record)


def decode(name: str, data: bytes) -> Record:
    """Decode a message with the default registry (see SchemaRegistry.decode)."""
    return default_registry().decode(name, data)


def _sample_delivery() -> Record:
    return {
        "message_id": "m-5f0c2a9e3b7d4c1a8e6f2b0d9c7a5e31",
        "event_id": "evt-2024-11-25-000123",
        "business_id": "garuda-indonesia",
        "subscriber": "9b" * 32,
        "wa_id": "+6281234567890",
        "recipient_index": 3,
        "kind": "FLIGHT_DELAY",
        "category": "UTILITY",
        "template": {"name": "flight_delay_v2", "language": "id", "params": ["GA404", "45"]},
        "entity_id": "GA404-2024-11-25",
        "priority": "URGENT",
        "deliver_after": None,
        "expires_at": 1_732_530_000_000,
        "decided_at": 1_732_520_000_000,
        "policy_version": "2024.11.1",
        "rule": "utility.urgent",
        "detail": "flight delay, departure within 12 h",
    }


def _measure(rounds: int = 50_000) -> None:
    """Print encode/decode microseconds for a Delivery (the figure quoted in the docstring)."""
    registry = default_registry()
    record = _sample_delivery()
    data = registry.encode("herald.v1.Delivery", record)
    assert registry.decode("herald.v1.Delivery", data) == record
    check = registry.latest("herald.v1.Delivery").check
    for label, step in (
        ("encode", lambda: registry.encode("herald.v1.Delivery", record)),
        ("decode", lambda: registry.decode("herald.v1.Delivery", data)),
        ("check", lambda: check(record)),
    ):
        best = min(_time(step, rounds) for _ in range(5))
        print(f"{label}: {best * 1e6:.1f} us ({len(data)} bytes)")


def _time(step: Callable[[], object], rounds: int) -> float:
    start = time.perf_counter()
    for _ in range(rounds):
        step()
    return (time.perf_counter() - start) / rounds
