"""The benchmark's profile summary names code that exists, and sorts idle threads apart.

Each inclusive row of `bench.throughput.INCLUSIVE_NEEDLES` is found by a frame's text in
py-spy's stacks. A renamed function would make its row read 0% with nothing said, as
happened once to the ingest, decide and send rows.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
from functools import reduce
from pathlib import Path

import pytest

from bench.throughput import IDLE, INCLUSIVE_NEEDLES, METRICS_THREAD, summarise_pyspy

FRAME = re.compile(r"^(?P<qualname>[\w.]+) \((?P<path>[\w/]+)\.py$")


def resolve(needle: str) -> object:
    """The function a `Qual.name (path/to/file.py` needle names, or the package a
    `package/` needle names; raises if there is none."""
    if needle.endswith("/"):
        spec = importlib.util.find_spec(needle.rstrip("/"))
        assert spec is not None, f"no package {needle}"
        return spec
    match = FRAME.match(needle)
    assert match, f"not a frame needle: {needle!r}"
    module = importlib.import_module(match["path"].replace("/", "."))
    found = reduce(getattr, match["qualname"].split("."), module)
    # Defined there, not merely imported: py-spy names the file the code is in.
    source = inspect.getsourcefile(found)
    assert source is not None and source.endswith(match["path"] + ".py"), f"{needle}: {source}"
    return found


@pytest.mark.parametrize(
    ("label", "needle"), INCLUSIVE_NEEDLES, ids=[n for _, n in INCLUSIVE_NEEDLES]
)
def test_every_inclusive_row_names_existing_code(label: str, needle: str) -> None:
    assert resolve(needle) is not None, label


def test_a_renamed_function_is_caught() -> None:
    with pytest.raises(AttributeError):
        resolve("TableStates.write_back (pipeline/streams/app.py")  # its name until a rename


def test_a_function_only_imported_into_the_file_is_caught() -> None:
    with pytest.raises(AssertionError):
        resolve("decide_batch (pipeline/streams/stages.py")  # defined in pipeline/domain


SERVER = "Thread.run (threading.py:982);BaseServer.serve_forever (socketserver.py:{line})"


def test_the_metrics_server_waiting_for_a_request_is_idle(tmp_path: Path) -> None:
    """Its listening thread sits in select() all run: idle, not "the /metrics thread",
    which is the HTTP thread answering a request."""
    raw = tmp_path / "worker.pyspy.txt"
    raw.write_text(
        f"{SERVER.format(line=233)};_PollLikeSelector.select (selectors.py:415) 900\n"
        f"{SERVER.format(line=238)};serve_http.<locals>.Handler.do_GET (pipeline/health.py:75)"
        ";generate_latest (prometheus_client/exposition.py:317) 10\n"
        "run_worker (pipeline/worker.py:108);decide (pipeline/domain/decide.py:140) 100\n"
    )
    rows, busy = summarise_pyspy(raw)
    shares = dict(rows)
    assert busy == 100
    assert shares[f"apart: {IDLE}"] == 900.0
    assert shares[f"apart: {METRICS_THREAD}"] == 10.0
