"""The documentation site as readers get it: ``mkdocs build --strict`` succeeds, the API
reference renders its cross-references as links (no Sphinx role such as ``:class:`` or
``:func:`` left as plain text), and the site has its search index."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import h2any

ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip("mkdocs")
pytest.importorskip("mkdocstrings")

# A Sphinx role as it shows when Markdown renders it: ":class:`x`" or ":class:<code>x</code>".
RAW_ROLE = re.compile(
    r":(?:py:)?(?:class|func|meth|attr|mod|exc|data|obj|ref|const|term|doc)"
    r":(?:`|&#96;|<code>)"
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_no_sphinx_role_is_left_as_text(site: Path) -> None:
    found: list[str] = []
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 10
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for match in RAW_ROLE.finditer(text):
            context = text[max(0, match.start() - 60) : match.end() + 60].replace("\n", " ")
            found.append(f"{page.relative_to(site)}: ...{context}...")
    assert not found, "raw Sphinx roles in the built site:\n" + "\n".join(found[:20])


def test_api_reference_links_its_cross_references(site: Path) -> None:
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    # Every public name has its own anchor...
    for name in ("Connection", "Response", "Client", "Timeout", "H2anyError", "connect"):
        assert f'id="h2any.{name}"' in api, name
    # ... and docstrings link to them (autorefs resolved the references), none left unresolved.
    assert 'href="#h2any.Response"' in api
    assert 'href="#h2any.Connection"' in api
    assert "<autoref" not in api
    assert h2any.__version__  # the package the reference documents imports


def test_site_has_a_theme_with_search(site: Path) -> None:
    index = (site / "search" / "search_index.json").read_text(encoding="utf-8")
    assert '"location"' in index
    assert "request_nowait" in index
    home = (site / "index.html").read_text(encoding="utf-8")
    assert 'name="generator" content="mkdocs-' in home
    assert "assets/stylesheets/main" in home  # the Material theme
    assert 'data-md-component="search"' in home
