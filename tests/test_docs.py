"""Every runnable example in the docs and README runs, on asyncio and on trio."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def _examples() -> list[pytest.param]:
    params = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for index, code in enumerate(_BLOCK.findall(path.read_text())):
            # Runnable examples run a whole program; fragments and examples that need the
            # internet (example.org) are not executed.
            if "anyio.run(" in code and "example.org" not in code:
                params.append(pytest.param(code, id=f"{path.name}-{index}"))
    return params


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("code", _examples())
def test_documented_example_runs(code: str, backend: str) -> None:
    prelude = (
        f"import functools, anyio\nanyio.run = functools.partial(anyio.run, backend={backend!r})\n"
    )
    result = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", "-c", prelude + code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr


def test_docs_have_runnable_examples() -> None:
    assert len(_examples()) >= 6
