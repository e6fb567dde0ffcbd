"""The README's Python API example runs as written, and says what it claims."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_api_example() -> str:
    section = README.read_text().split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_python_api_example_runs_and_tells_the_sources_apart(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IMGORIGIN_CACHE", str(tmp_path / "cache"))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(_python_api_example(), str(README), "exec"), {"__name__": "readme"})
    lines = [line.split() for line in printed.getvalue().splitlines()]
    verified, attributed, two_stage = lines[:6], lines[6:12], lines[12:]
    assert len(two_stage) == 6
    assert {name for name, verdict, _ in verified if verdict == "member"} == {f"vae_{i}.png" for i in range(3)}
    assert all(label in (name.split("_")[0], "unknown") for name, label, _ in attributed)  # features: never confused
    assert all(label == name.split("_")[0] and rule == "verification" for name, label, rule in two_stage)
