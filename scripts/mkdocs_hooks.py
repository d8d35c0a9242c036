"""MkDocs hooks of the documentation site (mkdocs.yml `hooks:`), two jobs:

1. `<!-- help: lit-vir TOOL [SUBCOMMAND] -->` in a page becomes the `--help` of that command, run in this process
   when the site is built, so the options on the site are the code's and cannot drift from it.
2. Every folder under docs/measurements/ gets an index page listing its files, and a page's link to such a folder
   (`measurements/results-fmnist/`, which GitHub shows as a listing) is pointed at it, so it opens a page, not a 404.
"""

from __future__ import annotations

import io
import os
import posixpath
import re
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from mkdocs.structure.files import File, Files

HELP = re.compile(r"^(?P<indent>[ \t]*)<!-- help: lit-vir(?P<argv>(?: [\w-]+)*) -->$", re.M)
HELP_COLUMNS = "100"  # the width argparse wraps the help to, whatever terminal builds the site
MEASUREMENTS = "measurements"


def command_help(argv: list[str]) -> str:
    """`lit-vir ARGV --help` as the console shows it, `COLUMNS` wide."""
    from lit_vir.cli import main

    output = io.StringIO()
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_COLUMNS
    command_line, sys.argv = sys.argv, ["lit-vir"]  # mkdocs' own argv is not the command's (LightningCLI warns)
    try:
        with redirect_stdout(output), redirect_stderr(io.StringIO()):
            main([*argv, "--help"])
    except SystemExit as exit_info:
        if exit_info.code not in (0, None):
            message = f"lit-vir {' '.join(argv)} --help exited {exit_info.code}:\n{output.getvalue()}"
            raise RuntimeError(message) from exit_info
    finally:
        sys.argv = command_line
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns
    return output.getvalue().rstrip()


def with_help(markdown: str) -> str:
    def fenced(match: re.Match) -> str:
        argv = match["argv"].split()
        block = f"```text\n$ lit-vir {' '.join([*argv, '--help'])}\n{command_help(argv)}\n```"
        return "\n".join(match["indent"] + line if line else line for line in block.splitlines())

    return HELP.sub(fenced, markdown)


def folder_index(folder: Path, docs: Path) -> str:
    """A page listing a measurements folder: its subfolders (their own index pages) and its files."""
    relative = folder.relative_to(docs).as_posix()
    lines = [
        f"# {relative}/",
        "",
        "Raw outputs of the commands named on the pages that link here, committed as they were written.",
        "",
    ]
    entries = sorted(folder.iterdir(), key=lambda path: (path.is_file(), path.name))
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            lines.append(f"- [{entry.name}/]({entry.name}/index.md)")
        else:
            lines.append(f"- [{entry.name}]({entry.name}) ({entry.stat().st_size:,} bytes)")
    return "\n".join(lines) + "\n"


def on_files(files: Files, config) -> Files:
    docs = Path(config["docs_dir"])
    root = docs / MEASUREMENTS
    for folder in [root, *sorted(path for path in root.rglob("*") if path.is_dir())]:
        if not (folder / "index.md").exists():
            uri = f"{folder.relative_to(docs).as_posix()}/index.md"
            files.append(File.generated(config, uri, content=folder_index(folder, docs)))
    return files


FOLDER_LINK = re.compile(r"\]\((?P<target>[^):#\s]+/)\)")


def with_folder_links(markdown: str, page, files: Files) -> str:
    """`[raw](measurements/x/)` → `measurements/x/index.md` where that page exists (GitHub lists the folder for
    the same link, so the pages keep it): MkDocs resolves only links to files."""

    def resolved(match: re.Match) -> str:
        target = posixpath.normpath(posixpath.join(posixpath.dirname(page.file.src_uri), match["target"]))
        found = files.get_file_from_path(f"{target}/index.md")
        return f"]({match['target']}index.md)" if found else match[0]

    return FOLDER_LINK.sub(resolved, markdown)


def on_page_markdown(markdown: str, page, config, files) -> str:
    return with_folder_links(with_help(markdown), page, files)
