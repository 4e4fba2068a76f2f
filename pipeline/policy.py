"""Load the policy file, validate it, and stamp it with its version.

The file is TOML (policy/default.toml documents every setting). Loading fails with a
message naming the section and key at fault; the version is a hash of the effective
content (defaults filled in), so formatting and comments do not change it.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import phonenumbers

from pipeline.domain.models import (
    DAY_MS,
    HOUR_MS,
    BusinessProfile,
    BusinessStatus,
    Coalescing,
    MarketingCaps,
    Policy,
    QuietHours,
)
from pipeline.errors import ConfigError

DEFAULT_POLICY_FILE = Path(__file__).resolve().parents[1] / "policy" / "default.toml"
MINUTE_MS = 60_000
_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


class PolicyError(ConfigError):
    """The policy file is missing, unreadable or wrong; the message says where."""


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) and x for x in v)


def _share(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 1


def _hhmm(v: Any) -> bool:
    return isinstance(v, str) and _HHMM.fullmatch(v) is not None


# section -> key -> (check, what it must be, default)
Check = Callable[[Any], bool]
SCHEMA: dict[str, dict[str, tuple[Check, str, Any]]] = {
    "limits": {
        "max_recipients_per_event": (_positive_int, "a positive integer", 10_000),
        "max_param_length": (_positive_int, "a positive integer", 1_024),
        "passcode_max_param_length": (_positive_int, "a positive integer", 15),
        "max_clock_skew_minutes": (_positive_int, "a positive integer", 5),
    },
    "consent": {
        "stop_keywords": (_str_list, "a list of words", ["STOP", "BERHENTI", "BAJA", "PARAR"]),
        "stop_all_words": (
            _str_list,
            "a list of words",
            ["ALL", "SEMUA", "TODO", "TODOS", "TUDO", "TODAS"],
        ),
    },
    "memory": {
        "duplicate_window_days": (_positive_int, "a positive integer", 7),
        "outcome_memory_days": (_positive_int, "a positive integer", 8),
        "entity_memory_days": (_positive_int, "a positive integer", 7),
    },
    "coalescing": {
        "flight_delay_interval_minutes": (_positive_int, "a positive integer", 30),
        "flight_delay_min_change_minutes": (_positive_int, "a positive integer", 30),
    },
    "marketing": {
        "per_user_24h": (_positive_int, "a positive integer", 2),
        "per_user_7d": (_positive_int, "a positive integer", 6),
        "per_business_24h": (_positive_int, "a positive integer", 1),
        "min_gap_hours": (_positive_int, "a positive integer", 4),
        "service_window_hours": (_positive_int, "a positive integer", 24),
        "unengaged_after": (_positive_int, "a positive integer", 5),
        "unengaged_per_7d": (_positive_int, "a positive integer", 1),
        "not_interested_days": (_positive_int, "a positive integer", 30),
        "relevance_threshold": (_share, "a number from 0 to 1", 0.2),
        "restricted_country_codes": (_str_list, 'a list like ["+1"]', ["+1"]),
    },
    "quiet_hours": {
        "start": (_hhmm, 'a time "HH:MM"', "20:00"),
        "end": (_hhmm, 'a time "HH:MM"', "09:00"),
        "urgent_departure_hours": (_positive_int, "a positive integer", 12),
    },
    "pair_rate": {
        "min_interval_seconds": (_positive_int, "a positive integer", 6),
    },
    "business_limits": {
        "window_hours": (_positive_int, "a positive integer", 24),
        "default_tier": (lambda v: isinstance(v, str), "a tier name", "TIER_1"),
        "tiers": (
            lambda v: isinstance(v, dict) and bool(v),
            "a table of tier = limit",
            {
                "TIER_1": 250,
                "TIER_2": 2_000,
                "TIER_3": 10_000,
                "TIER_4": 100_000,
                "UNLIMITED": "unlimited",
            },
        ),
    },
    "links": {
        "blocked_domains": (lambda v: isinstance(v, list), "a list of domains", []),
    },
}


def _effective(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Check every section and key; return the document with defaults filled in."""
    unknown = set(doc) - set(SCHEMA) - {"businesses"}
    if unknown:
        raise PolicyError(f"unknown section(s): {', '.join(sorted(unknown))}")
    out: dict[str, Any] = {}
    for section, keys in SCHEMA.items():
        given = doc.get(section, {})
        if not isinstance(given, dict):
            raise PolicyError(f"[{section}] must be a table")
        extra = set(given) - set(keys)
        if extra:
            raise PolicyError(f"[{section}] unknown key(s): {', '.join(sorted(extra))}")
        out[section] = {}
        for key, (check, what, default) in keys.items():
            value = given.get(key, default)
            if not check(value):
                raise PolicyError(f"[{section}] {key} must be {what}")
            out[section][key] = value
    _check_tiers(out["business_limits"])
    out["marketing"]["restricted_country_codes"] = [
        str(c) for c in out["marketing"]["restricted_country_codes"]
    ]
    out["links"]["blocked_domains"] = sorted({_domain(d) for d in out["links"]["blocked_domains"]})
    out["businesses"] = _businesses(doc.get("businesses", {}), out["business_limits"]["tiers"])
    return out


def _check_tiers(limits: dict[str, Any]) -> None:
    for tier, limit in limits["tiers"].items():
        if limit != "unlimited" and not _positive_int(limit):
            raise PolicyError(
                f'[business_limits.tiers] {tier} must be a positive integer or "unlimited"'
            )
    if limits["default_tier"] not in limits["tiers"]:
        raise PolicyError("[business_limits] default_tier must name one of the tiers")


def _domain(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9.-]+\.[A-Za-z]{2,}", value):
        raise PolicyError("[links] blocked_domains must hold host names like evil.example")
    return value.lower().removeprefix("www.")


def _businesses(doc: Any, tiers: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    if not isinstance(doc, dict):
        raise PolicyError("[businesses] must be a table of business tables")
    out: dict[str, dict[str, Any]] = {}
    for business_id, b in sorted(doc.items()):
        where = f"[businesses.{business_id}]"
        if not isinstance(b, dict) or set(b) - {"tier", "verified", "status"}:
            raise PolicyError(f"{where} takes only tier, verified and status")
        tier = b.get("tier", "TIER_1")
        if tier not in tiers:
            raise PolicyError(f"{where} tier must be one of {', '.join(tiers)}")
        status = b.get("status", "ACTIVE")
        if status not in BusinessStatus.__members__:
            raise PolicyError(f"{where} status must be ACTIVE or SUSPENDED")
        out[business_id] = {
            "tier": tier, "verified": bool(b.get("verified", False)), "status": status,
        }  # fmt: skip
    return out


def _regions(calling_codes: list[str]) -> frozenset[str]:
    regions: set[str] = set()
    for code in calling_codes:
        digits = code.lstrip("+")
        found = phonenumbers.region_codes_for_country_code(int(digits)) if digits.isdigit() else ()
        if not found:
            raise PolicyError(f"[marketing] restricted_country_codes: {code!r} is no calling code")
        regions.update(found)
    return frozenset(regions)


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def version_of(effective: Mapping[str, Any]) -> str:
    """Return the policy version: a hash of the effective content."""
    canonical = json.dumps(effective, sort_keys=True, separators=(",", ":"))
    return "p-" + hashlib.sha256(canonical.encode()).hexdigest()[:12]


def policy_from_document(doc: Mapping[str, Any]) -> Policy:
    """Build the Policy from a parsed policy document (validated here)."""
    e = _effective(doc)
    m, q, lim = e["marketing"], e["quiet_hours"], e["limits"]
    tiers = e["business_limits"]["tiers"]
    return Policy(
        version=version_of(e),
        duplicate_window_ms=e["memory"]["duplicate_window_days"] * DAY_MS,
        outcome_memory_ms=e["memory"]["outcome_memory_days"] * DAY_MS,
        entity_memory_ms=e["memory"]["entity_memory_days"] * DAY_MS,
        max_recipients_per_event=lim["max_recipients_per_event"],
        max_param_length=lim["max_param_length"],
        passcode_max_param_length=lim["passcode_max_param_length"],
        max_clock_skew_ms=lim["max_clock_skew_minutes"] * MINUTE_MS,
        stop_keywords=tuple(e["consent"]["stop_keywords"]),
        stop_all_words=tuple(e["consent"]["stop_all_words"]),
        marketing=MarketingCaps(
            per_user_24h=m["per_user_24h"],
            per_user_7d=m["per_user_7d"],
            per_business_24h=m["per_business_24h"],
            min_gap_ms=m["min_gap_hours"] * HOUR_MS,
            service_window_ms=m["service_window_hours"] * HOUR_MS,
            unengaged_after=m["unengaged_after"],
            unengaged_per_7d=m["unengaged_per_7d"],
            not_interested_ms=m["not_interested_days"] * DAY_MS,
        ),
        relevance_threshold=float(m["relevance_threshold"]),
        restricted_marketing_regions=_regions(m["restricted_country_codes"]),
        quiet_hours=QuietHours(
            start_minute=_minutes(q["start"]),
            end_minute=_minutes(q["end"]),
            urgent_departure_ms=q["urgent_departure_hours"] * HOUR_MS,
        ),
        coalescing=Coalescing(
            flight_delay_interval_ms=e["coalescing"]["flight_delay_interval_minutes"] * MINUTE_MS,
            flight_delay_min_change_minutes=e["coalescing"]["flight_delay_min_change_minutes"],
        ),
        pair_interval_ms=e["pair_rate"]["min_interval_seconds"] * 1000,
        tier_limits=MappingProxyType(
            {t: None if v == "unlimited" else int(v) for t, v in tiers.items()}
        ),
        default_tier=e["business_limits"]["default_tier"],
        business_window_ms=e["business_limits"]["window_hours"] * HOUR_MS,
        businesses=MappingProxyType(
            {
                b: BusinessProfile(b, p["tier"], p["verified"], BusinessStatus(p["status"]))
                for b, p in e["businesses"].items()
            }
        ),
        blocked_domains=frozenset(e["links"]["blocked_domains"]),
    )


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PolicyError(f"policy file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"policy file {path}: not valid TOML ({exc})") from exc


def load_policy(path: Path | str | None = None) -> Policy:
    """Load and validate a policy file (the default one when no path is given)."""
    path = Path(path) if path else DEFAULT_POLICY_FILE
    doc = _read(path)
    try:
        return policy_from_document(doc)
    except PolicyError as exc:
        raise PolicyError(f"policy file {path}: {exc}") from exc


def effective_document(path: Path | str | None = None) -> dict[str, Any]:
    """Return the effective policy (defaults filled in) with its version, for display."""
    path = Path(path) if path else DEFAULT_POLICY_FILE
    try:
        effective = _effective(_read(path))
    except PolicyError as exc:
        raise PolicyError(f"policy file {path}: {exc}") from exc
    return {"policy_version": version_of(effective), "file": str(path), **effective}


def default_policy() -> Policy:
    """Return the policy in policy/default.toml."""
    return load_policy(None)
