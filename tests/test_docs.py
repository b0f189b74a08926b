"""The documentation site builds with no warning, its API reference describes every type of the committed
SDL, and nothing in it is fetched from the internet. No backend: it runs in the SQLite half."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from graphql import build_schema

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once for this module exactly as `make docs` builds it (strict), into a temporary folder."""
    out = tmp_path_factory.mktemp("site")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    log = built.stdout + built.stderr
    assert built.returncode == 0, log
    assert "WARNING" not in log, log
    return out


def schema_type_names() -> set[str]:
    schema = build_schema((ROOT / "schema.graphql").read_text(encoding="utf-8"))
    return {name for name in schema.type_map if not name.startswith("__")}


def test_the_site_builds_strictly_with_every_page_of_the_nav(site: Path) -> None:
    for page in ("index", "getting-started", "api/reference", "operations/backups", "performance"):
        assert (site / f"{page}.html").is_file(), page
    assert (site / "screenshots" / "portal-pix.png").is_file()  # the guides' pictures are part of the site


def test_the_api_reference_describes_every_type_of_the_committed_schema(site: Path) -> None:
    reference = (site / "api" / "reference.html").read_text(encoding="utf-8")
    anchors = set(re.findall(r'<h3 id="([^"]+)"', reference))
    names = schema_type_names()
    assert len(names) > 100
    assert names - anchors == set(), "types of schema.graphql missing from the API reference"
    assert anchors - names == set(), "the API reference describes types schema.graphql does not have"
    # fields with their arguments, defaults and descriptions, and enum values
    assert re.search(r"<code>renewalForecast</code>.*?<code>days</code>", reference, re.S)
    assert "Ledger entries of this wallet" in reference
    assert "<code>PAYMENT_OVERDUE</code>" in reference


def test_the_api_reference_follows_the_sdl_it_is_built_from() -> None:
    """The page is generated from the SDL given, at every build: a new type shows up without anything else."""
    sys.path.insert(0, str(ROOT / "docs" / "hooks"))
    try:
        import api_reference
    finally:
        sys.path.remove(str(ROOT / "docs" / "hooks"))
    sdl = """
        "A coin"
        type Coin { "its value" value(scale: Int = 2, currency: String): [Int!]! }
        enum Side { HEADS TAILS }
        input Flip { side: Side! = HEADS }
        type Query { coin(flip: Flip): Coin }
    """
    page = api_reference.render(sdl)
    for name in ("Coin", "Side", "Flip", "Query", "Int", "String"):
        assert f"### {name} {{#{name}}}" in page
    assert "- **`value`**: \\[[Int](#Int)!\\]! — its value" in page
    assert "    - `scale`: [Int](#Int) = `2`" in page
    assert "    - `currency`: [String](#String)\n" in page  # no default, or a null one, shows none
    assert "- `side`: [Side](#Side)! = `HEADS`" in page


def test_nothing_in_the_site_is_fetched_from_the_internet(site: Path) -> None:
    pages = list(site.rglob("*.html"))
    assert pages
    for page in pages:
        html = page.read_text(encoding="utf-8")
        loaded = re.findall(r'<(?:script|link|img|iframe|source)\b[^>]*\b(?:src|href)="((?:https?:)?//[^"]*)"', html)
        assert loaded == [], (page, loaded)
        assert "fonts.googleapis.com" not in html and "fonts.gstatic.com" not in html, page
        assert 'class="mermaid"' not in html, page  # Material would load mermaid from a CDN


def test_the_readmes_links_lead_to_files_of_the_repository() -> None:
    """The README links into docs/ by relative paths, which work on a forge and in a checkout alike."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [t for t in targets if "://" not in t]
    assert any(t.startswith("docs/") for t in local)
    assert [t for t in local if not (ROOT / t).exists()] == []
    assert [t for t in targets if "://" in t] == []  # nothing needed to read it is elsewhere
