"""The documentation's runnable blocks, found and run in one place for every page (README.md, docs/**/*.md).

A page's fenced `bash` and `python` blocks are what a reader copies. Each is either run by the tests or marked right
above its fence with `<!-- not run by the tests: REASON -->` (it needs a GPU, the internet or hours). A block that
shows a failure on purpose is marked `<!-- fails on purpose: exit N -->` and must exit with N. A bash block holds
only `lit-vir ...` (or `python -m lit_vir ...`) command lines; they run in this process through `lit_vir.cli.main`,
with `tiny(argv)` appended: a tiny model of the command's family, one short epoch (a schedule's warm-up shortened to
fit it), small batches, and the files of generated datasets (`the_data`) where the command names MNIST,
Fashion-MNIST or CIFAR. Python blocks are executed
as they stand, in the page's folder.
"""

from __future__ import annotations

import itertools
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, TINY_VIR, console_script
from tests.fakedata import write_cifar10, write_cifar100, write_mnist

FENCE = re.compile(
    r"^(?P<marker>[ \t]*<!-- (?P<kind>not run by the tests|fails on purpose): (?P<note>[^>]*?) -->\n)?"
    r"(?P<indent>[ \t]*)```(?P<language>[\w-]*)\n(?P<body>.*?)^(?P=indent)```",
    re.S | re.M,
)
RUNNABLE = ("bash", "python")
COMMAND = re.compile(r"^\s*(\$ )?(lit-vir|python3?)\s")  # a line a reader would run
EXIT = re.compile(r"^exit (?P<code>\d+)$")


def pages() -> list[Path]:
    """README.md and every page of the site; docs/measurements/ holds raw outputs, not pages to follow."""
    docs = sorted(path for path in (REPO / "docs").rglob("*.md") if "measurements" not in path.parts)
    return [REPO / "README.md", *docs]


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    language: str
    body: str
    skipped: str | None  # the reason it is not run
    exit_code: int  # what its commands must exit with (0, or the marked failure)

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def fenced(page: Path) -> list[Block]:
    """Every fenced block of a page, in order, with the marker above it."""
    text = page.read_text()
    found = []
    for match in FENCE.finditer(text):
        skipped = match["note"].strip() if match["kind"] == "not run by the tests" else None
        exit_code = 0
        if match["kind"] == "fails on purpose":
            code = EXIT.match(match["note"].strip())
            assert code, f"{page}: a failure marker must read `<!-- fails on purpose: exit N -->`, not {match[0]!r}"
            exit_code = int(code["code"])
        line = text.count("\n", 0, match.start("indent")) + 1
        body = "\n".join(part.removeprefix(match["indent"]) for part in match["body"].splitlines())
        found.append(Block(page, line, match["language"], body + "\n", skipped, exit_code))
    return found


def blocks(page: Path) -> list[Block]:
    """The bash and Python blocks the tests must run, in page order."""
    return [block for block in fenced(page) if block.language in RUNNABLE and block.skipped is None]


@dataclass(frozen=True)
class Command:
    argv: list[str]  # after `lit-vir`
    line: str  # as the page writes it, continuations joined

    def __str__(self) -> str:
        return self.line


def commands(block: Block) -> list[Command]:
    """The shell lines of a bash block, continuation lines joined and comments dropped; each must be a lit-vir
    command (`python -m lit_vir` is the same command)."""
    found = []
    for line in block.body.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if words[:3] in (["python", "-m", "lit_vir"], ["python3", "-m", "lit_vir"]):
            words = ["lit-vir", *words[3:]]
        assert words[0] == "lit-vir", f"{block.where}: not a lit-vir command: {line!r} (run it or mark the block)"
        found.append(Command(words[1:], " ".join(line.split("#")[0].split())))
    return found


# ----------------------------------------------------------------------------------------------- tiny runs

LIGHTNING = {"fit", "validate", "test", "predict"}
QUIET = ["--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false"]
SHORT = ["--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1"]
VIT = ["--model.backbone.init_args.embed_dim", "16", "--model.backbone.init_args.num_heads", "2"]
# A model family by the config pieces (or `--model.backbone` class path) a command names, first match wins; its
# tiny sizes. Families at their own size are small enough at 2 batches of 8 images.
FAMILIES: list[tuple[str, list[str]]] = [
    ("slim/slim-b", []),  # a slimmed ViT: its widths are the searched model's
    ("configs/model/vitae_v2.yaml", []),
    ("configs/model/mobilevit.yaml", []),
    ("configs/model/timm", []),
    ("configs/model/linear.yaml", []),
    ("configs/model/mlp.yaml", []),
    ("configs/model/small_cnn.yaml", []),
    ("configs/model/vit_", VIT),
    ("lit_vir.models.vit_", VIT),
    ("configs/model/revit", VIT),
    ("configs/slim/search.yaml", VIT),
]
LARGE_DATA = {  # data pieces whose datasets the tests write in their real formats
    "configs/data/cifar10.yaml": ["--data.init_args.verify_checksums", "false"],
    "configs/data/cifar100.yaml": ["--data.init_args.verify_checksums", "false"],
}
OWN_IMAGES = ["--data.image_size", "8", "--data.num_workers", "0"]
WARMUP = ["--model.init_args.scheduler.init_args.warmup", "1"]
TOOLS = {
    "perturb": ["--limit_batches", "1"],
    "quantize": ["--calibration", "16", "--search_images", "8", "--limit_batches", "1", "--lazy_search"],
    "slim": ["--limit-batches", "1", "--batch-size", "4", "--warmup", "0", "--repeats", "1"],
    "export": ["--check_batch", "4"],
    "attention": ["--images", "4"],
    "bench": ["--overrides", "model.backbone.init_args.embed_dim=24"],
}


SWEEP_TRIAL = (
    "{trainer.max_epochs: 1, trainer.limit_train_batches: 2, trainer.limit_val_batches: 1, "
    "trainer.limit_test_batches: 1, trainer.enable_progress_bar: false}"
)  # replaces the spec's `overrides`
SWEEP = ["--launcher.kind", "inline", "--overrides", SWEEP_TRIAL]  # the trials in this process, one by one
SEARCH_TRIALS = ["--search.n_trials", "2"]


def spec_searches(argv: list[str]) -> bool:
    """Whether a sweep spec named by `-c` has a search (then its trials are cut to two)."""
    import yaml

    pieces = [argv[at + 1] for at, word in enumerate(argv[:-1]) if word in ("-c", "--config")]
    return any("search" in (yaml.safe_load(Path(piece).read_text()) or {}) for piece in pieces)


def model_overrides(argv: list[str]) -> list[str]:
    for marker, overrides in FAMILIES:
        if any(marker in word for word in argv):
            return overrides
    return TINY_VIR


def tiny(argv: list[str]) -> list[str]:
    """`argv` with what makes it run in seconds appended (later options win): the model's tiny sizes, one epoch
    unless the command names its epochs, two batches of 8 images, no progress bar; a tool's own limits."""
    name = argv[0] if argv else ""
    if "--help" in argv:
        return argv
    if argv[:2] == ["sweep", "run"]:
        return [*argv, *SWEEP, *(SEARCH_TRIALS if spec_searches(argv) else [])]
    if name not in LIGHTNING | {"dynamics"} | set(TOOLS):
        return argv
    if name in TOOLS:
        return [*argv, *TOOLS[name]]
    configured = any(word in ("-c", "--config") for word in argv)
    added = list(model_overrides(argv)) if configured else []  # a copy: the tables stay as they are
    if name == "dynamics":
        return [*argv, *added]
    added += QUIET + SHORT
    if not any(word.startswith("--trainer.max_epochs") for word in argv):
        added += ["--trainer.max_epochs", "1"]
    if any("image_folder.yaml" in word or "huggingface.yaml" in word for word in argv):
        added += OWN_IMAGES
    elif "--data.predict_root" in argv:
        added += ["--data.num_workers", "0"]
    else:
        added += ["--data.init_args.batch_size", "8"]
    for piece, extra in LARGE_DATA.items():
        if piece in argv:
            added += extra
    if any("recipe/strong.yaml" in word or "scheduler.init_args.warmup" in word for word in argv):
        added += WARMUP  # a warm-up longer than the two steps of the tiny run is refused (rightly)
    return [*argv, *added]


def the_data(folder: Path) -> None:
    """`folder/data/` with MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 in their real on-disk formats (a few
    hundred images each), and `folder/configs` pointing at the repository's configs, as a reader's checkout has."""
    write_mnist(folder / "data")
    write_mnist(folder / "data", "FashionMNIST", seed=1)
    write_cifar10(folder / "data")
    write_cifar100(folder / "data")
    (folder / "configs").symlink_to(REPO / "configs")


def run_command(command: Command, exit_code: int, capsys, prepare: Callable[[Command], None] | None = None) -> str:
    """`lit-vir COMMAND` in this process, tiny; returns what it printed. It must exit with `exit_code`."""
    from lit_vir.cli import main

    if prepare:
        prepare(command)
    argv = tiny(command.argv)
    if any(word == "--trainer.strategy" and value.startswith("ddp") for word, value in itertools.pairwise(argv)):
        # DDP's second rank is a new process: the console script shows what a reader's shell does (Lightning's
        # launcher started from inside pytest waited for a rank that never joined)
        completed = subprocess.run([console_script("lit-vir"), *argv], capture_output=True, text=True, timeout=600)
        output = completed.stdout + completed.stderr
        failed = f"`lit-vir {shlex.join(argv)}` exited {completed.returncode}, not {exit_code}:\n{output[-4000:]}"
        assert completed.returncode == exit_code, failed
        return output
    code = 0
    with pytest.MonkeyPatch.context() as patch:  # as the console script sees it (environment.yaml, DDP's children)
        patch.setattr(sys, "argv", [console_script("lit-vir"), *argv])
        try:
            main(argv)
        except SystemExit as exit_info:
            code = exit_info.code if isinstance(exit_info.code, int) else (0 if exit_info.code is None else 1)
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert code == exit_code, f"`lit-vir {shlex.join(argv)}` exited {code}, not {exit_code}:\n{output[-4000:]}"
    return output


def run_block(block: Block, capsys, prepare: Callable[[Command], None] | None = None) -> list[tuple[Command, str]]:
    """Run a block in the current folder: each command of a bash block (with its output), or the Python code."""
    if block.language == "python":
        namespace = {"__name__": "__main__"}
        exec(compile(block.body, block.where, "exec"), namespace)
        captured = capsys.readouterr()
        return [(Command([], block.where), captured.out + captured.err)]
    found = commands(block)
    assert found, f"{block.where}: an empty bash block"
    return [(command, run_command(command, block.exit_code, capsys, prepare)) for command in found]
