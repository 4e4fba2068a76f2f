"""Load the policy and stamp it with its version (a hash of its effective content)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace

from pipeline.domain.models import Policy


def policy_version(policy: Policy) -> str:
    """Return a short content hash of every setting but the version itself."""
    content = {k: v for k, v in asdict(policy).items() if k != "version"}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
    return f"p-{digest[:12]}"


def default_policy() -> Policy:
    """Return the built-in default policy, versioned by its content."""
    policy = Policy(version="")
    return replace(policy, version=policy_version(policy))
