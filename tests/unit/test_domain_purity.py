"""The pure core stays pure: importing it pulls in no streaming, Kafka or metrics library."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOMAIN_MODULES = sorted(
    f"pipeline.domain.{p.stem}"
    for p in (ROOT / "pipeline" / "domain").glob("*.py")
    if p.stem != "__init__"
)
# "mode" is faust's own runtime library.
FORBIDDEN = ("faust", "mode", "aiokafka", "kafka", "prometheus_client")

# argv: the forbidden top-level names, "--", then the modules to import.
CHECK = """
import sys
split = sys.argv.index("--")
forbidden, modules = set(sys.argv[1:split]), sys.argv[split + 1:]
for name in modules:
    __import__(name)
loaded = sorted({m.split(".")[0] for m in sys.modules} & forbidden)
assert not loaded, f"pipeline.domain imported {loaded}"
"""


def test_domain_imports_no_shell_libraries() -> None:
    """Importing every pipeline.domain module loads no faust, Kafka or Prometheus module."""
    assert "pipeline.domain.decide" in DOMAIN_MODULES
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", CHECK, *FORBIDDEN, "--", "pipeline.domain", *DOMAIN_MODULES],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_the_check_would_catch_a_forbidden_import() -> None:
    """The subprocess check fails when a forbidden module is imported (it is not vacuous)."""
    result = subprocess.run(
        [sys.executable, "-c", CHECK, "hashlib", "--", "pipeline.domain"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode != 0 and "imported ['hashlib']" in result.stderr
