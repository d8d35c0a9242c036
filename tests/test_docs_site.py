"""The documentation site builds with `mkdocs build --strict` — no broken link or anchor, no missing page or API
reference — and holds what its hooks and mkdocstrings generate: each command's `--help` as the code prints it, the
API from the docstrings, an index page for every folder of raw measurements."""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
from contextlib import redirect_stdout
from html import unescape
from pathlib import Path

import pytest
from mkdocs.commands.build import build
from mkdocs.config import load_config
from mkdocs.exceptions import Abort

from tests.conftest import REPO


def build_site(site: Path, docs: Path | None = None) -> None:
    """`mkdocs build --strict` of mkdocs.yml into `site` (and from `docs` instead of docs/ when given)."""
    options = {"site_dir": str(site), "strict": True}
    if docs is not None:
        options["docs_dir"] = str(docs)
    logging.getLogger("mkdocs").setLevel(logging.INFO)
    build(load_config(str(REPO / "mkdocs.yml"), **options))


def text_of(html: Path) -> str:
    return unescape(re.sub(r"<[^>]+>", "", html.read_text()))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("site")
    build_site(folder)
    return folder


def test_the_site_builds_strictly_with_every_page_of_the_nav(site):
    for page in ("index", "getting-started/quickstart/index", "how-to/own-images/index", "reference/api/models/index"):
        assert (site / f"{page}.html").is_file(), page
    assert (site / "search" / "search_index.json").is_file()  # the search plugin indexed the pages


def test_the_api_reference_is_generated_from_the_docstrings(site):
    from lit_vir.models.reservoir_options import ReservoirOptions

    page = site / "reference" / "api" / "models" / "index.html"
    models = text_of(page)
    first_line = ReservoirOptions.__doc__.splitlines()[0]  # "How a reservoir's fixed matrices are drawn ..."
    assert first_line in models
    assert 'id="lit_vir.models.vir.ViR"' in page.read_text()  # the class's section, its anchor its full path
    assert "ViR(\n    num_classes: int = 10," in models  # its signature, formatted with its annotations
    assert "A preset takes its arguments by keyword only" in models  # presets.py's module docstring, as written


API_PACKAGES = ("models", "analysis", "data", "training", "robustness", "quantization", "sweep", "export")


def test_every_module_of_the_api_packages_has_its_section():
    """A module added to a package without its `::: lit_vir.<package>.<module>` line would be missing from the
    reference without a warning: mkdocstrings renders what the page names, nothing more."""
    for package in API_PACKAGES:
        page = (REPO / "docs" / "reference" / "api" / f"{package}.md").read_text()
        named = set(re.findall(r"^::: (\S+)$", page, re.M))
        root = REPO / "lit_vir" / package
        modules = {
            ".".join(("lit_vir", package, *path.relative_to(root).with_suffix("").parts)).removesuffix(".__init__")
            for path in root.rglob("*.py")
        }
        missing = sorted(modules - named - {f"lit_vir.{package}"})  # the package's own docstring heads the page
        assert not missing, f"docs/reference/api/{package}.md: no section for {missing}"


def test_the_commands_page_shows_each_tools_help_as_the_code_prints_it(site):
    from lit_vir.commands.bench import parser

    page = text_of(site / "reference" / "commands" / "index.html")
    with redirect_stdout(io.StringIO()):
        expected = parser().format_help()
    # the options and their help, word for word (the widths of the wrap may differ)
    for option in ("--models", "--batch_size", "--overrides", "--output"):
        assert option in page
    words = " ".join(expected.split())
    assert "examples: lit-vir bench" in words and "examples: lit-vir bench" in " ".join(page.split())
    from lit_vir.cli import TOOLS

    for tool in [*TOOLS, "sweep run", "sweep status", "sweep report", "fit"]:  # a new tool without its section fails
        assert f"$ lit-vir {tool} --help" in page, tool


def test_every_measurements_folder_has_an_index_and_folder_links_reach_it(site):
    for folder in (REPO / "docs" / "measurements").rglob("*"):
        if folder.is_dir():
            relative = folder.relative_to(REPO / "docs")
            assert (site / relative / "index.html").is_file(), relative
    results = (site / "results" / "index.html").read_text()
    folders = re.findall(r"\]\((measurements/[^)#\s]+/)\)", (REPO / "docs" / "results.md").read_text())
    assert folders, "docs/results.md links no measurements folder any more: pick another page for this check"
    for folder in folders:  # `measurements/x/` → the generated measurements/x/index.md, shown as ../measurements/x/
        assert f'href="../{folder}"' in results, folder


def test_a_broken_link_or_anchor_fails_the_build(tmp_path):
    """The strictness the other tests rely on: a page linking a missing page, or a missing heading, stops the build."""
    docs = tmp_path / "docs"
    shutil.copytree(REPO / "docs", docs)
    page = docs / "getting-started" / "install.md"
    page.write_text(page.read_text() + "\n[gone](../how-to/no-such-page.md) [gone](quickstart.md#no-such-heading)\n")
    with pytest.raises(Abort, match="Aborted with 2 warnings"):  # the site itself builds with none (above)
        build_site(tmp_path / "site", docs)


def test_every_link_of_the_readme_reaches_its_file():
    """README.md is not a page of the site, so the strict build does not check it: its images and local links are
    checked here (the site's pages by the build)."""
    readme = (REPO / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [target for target in targets if not re.match(r"[a-z]+:", target)]
    assert any(target.endswith(".png") for target in local) and any(target.endswith(".md") for target in local)
    missing = [target for target in local if not (REPO / target).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


def test_the_readme_says_how_to_serve_the_site():
    readme = (REPO / "README.md").read_text()
    assert 'pip install -e ".[docs]"' in readme and "mkdocs serve" in readme
    assert os.path.isfile(REPO / "mkdocs.yml")
