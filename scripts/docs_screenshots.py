"""Screenshots of the documentation site and of TensorBoard, as a reader sees them, into docs/images/.

    python scripts/docs_screenshots.py               # both
    python scripts/docs_screenshots.py site          # build the site, serve it, photograph three pages
    python scripts/docs_screenshots.py tensorboard   # train three short runs, serve TensorBoard, photograph it
    python scripts/docs_screenshots.py tensorboard --runs /tmp/tb   # the same, keeping the runs (reused next time)

site: `mkdocs build --strict` into a temporary folder, served by `python -m http.server` on localhost, opened in
headless Chromium: the home page, a how-to and an API page with the navigation and the search (the API page opened
with a query, so the search box shows its results) — docs/images/site-{home,how-to,api-search}.png.

tensorboard: in a temporary folder (or --runs), the quickstart ViR with the dynamics callback, its no_reservoir
ablation and a ViT-Small (the runs of docs/getting-started/first-comparison.md, 10 epochs each), then
`tensorboard --logdir logs` on localhost: its time series (the losses, accuracies, learning rate and throughput),
the dynamics figures and the HPARAMS table — docs/images/tensorboard-*.png.

Needs Debian's Chromium and its driver (`apt-get install -y chromium chromium-driver`; other binaries: CHROMIUM=/path,
CHROMEDRIVER=/path), driven through chromedriver's WebDriver protocol on localhost, so each screenshot waits until
the page shows what it is taken for. Chromium runs with a fresh profile and without background networking.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "docs" / "images"
CHROMIUM_FLAGS = [  # the machine's notes: nothing leaves it, no state kept between runs
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
LOADED = "document.readyState === 'complete'"
SEARCHED = "document.querySelector('.md-search-result__list li') !== null"  # the search index answered
SITE_PAGES = {  # file name → (path on the site, window size, when it is ready, at most how many seconds to wait, a
    # script run once it is ready)
    "site-home.png": ("", (1400, 1000), LOADED, 60, ""),
    "site-how-to.png": ("how-to/own-images/", (1400, 1000), LOADED, 60, ""),
    "site-api-search.png": ("reference/api/models/?q=spectral+radius", (1400, 1000), SEARCHED, 120, ""),
}
# TensorBoard's time series (Angular) renders in the page's DOM; HPARAMS (Polymer) inside shadow roots, so its text
# is read through them.
DEEP_TEXT = (
    "(function text(node) { let found = ''; for (const child of node.childNodes) "
    "{ found += child.nodeType === 3 ? child.textContent : text(child); } "
    "if (node.shadowRoot) { found += text(node.shadowRoot); } return found; })(document.body)"
)
CHARTS_SHOWN = "document.querySelectorAll('canvas').length >= 6"
IMAGES_SHOWN = "Array.from(document.querySelectorAll('img')).filter(image => image.naturalWidth > 0).length >= 3"
# the settings pane (open by default) closed and the step marker of the time series removed, so the charts have room
TIDY_TIME_SERIES = (
    "document.querySelector('button.settings-button.checked')?.click(); "
    "document.querySelectorAll(\"button[aria-label='Deselect fob']\").forEach(button => button.click());"
)
SCALARS = "^(train/loss_epoch|train/acc|val/loss|val/acc|lr-Adam/decay|perf/train_images_per_s)$"
FIGURES = "^dynamics/core0/(spectrum|memory|states)$"
TENSORBOARD_PAGES = {  # file name → (path, window size, ready, seconds, script run once ready)
    "tensorboard-scalars.png": (
        f"?darkMode=false&tagFilter={quote(SCALARS, safe='')}#timeseries",
        (1500, 1000),
        CHARTS_SHOWN,
        180,
        TIDY_TIME_SERIES,
    ),
    "tensorboard-dynamics.png": (
        f"?darkMode=false&tagFilter={quote(FIGURES, safe='')}#timeseries",
        (1500, 640),  # one row of three cards
        IMAGES_SHOWN,
        180,
        TIDY_TIME_SERIES,
    ),
    "tensorboard-hparams.png": (
        "?darkMode=false#hparams",
        (1500, 800),
        f"{DEEP_TEXT}.includes('ViT-Small-9')",
        180,
        "",
    ),
}
RUNS = [  # docs/getting-started/first-comparison.md and tensorboard.md, shorter
    ["-c", "configs/quickstart.yaml", "--trainer.callbacks+=configs/callbacks/dynamics.yaml"],
    ["-c", "configs/quickstart.yaml", "-c", "configs/ablation/no_reservoir.yaml"],
    [
        "-c",
        "configs/quickstart.yaml",
        "-c",
        "configs/model/vit_small.yaml",
        "--model.backbone.init_args.patch_size",
        "2",
    ],
]
RUN_OPTIONS = ["--trainer.max_epochs", "10", "--trainer.enable_progress_bar", "false"]


def executable(name: str, variable: str, *candidates: str) -> str:
    found = os.environ.get(variable) or next(filter(None, map(shutil.which, candidates)), None)
    if not found:
        raise SystemExit(
            f"docs_screenshots: no {name} found: apt-get install -y chromium chromium-driver (or {variable})"
        )
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(port: int, process: subprocess.Popen, seconds: float = 120) -> None:
    """Until something listens on localhost:port (or the server died, or the time is up)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"docs_screenshots: {process.args[0]} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.5)
    raise SystemExit(f"docs_screenshots: nothing listens on port {port} after {seconds} s")


@contextlib.contextmanager
def serving(command: list[str], port: int, cwd: Path | None = None) -> Iterator[str]:
    """A server started with `command`, stopped (by its own process id) when the block ends."""
    server = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(port, server)
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.terminate()
        server.wait(timeout=30)


class Browser:
    """Headless Chromium driven through chromedriver's W3C WebDriver protocol (JSON over HTTP on localhost), with a
    fresh profile: pages get real time to run their scripts (the search index, TensorBoard's dashboards), and the
    script can wait until what it photographs is on the page."""

    def __init__(self, endpoint: str, profile: str) -> None:
        self.endpoint = endpoint
        options = {"binary": executable("Chromium", "CHROMIUM", "chromium", "chromium-browser"),
                   "args": [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]}  # fmt: skip
        capabilities = {"capabilities": {"alwaysMatch": {"goog:chromeOptions": options}}}
        self.session = self.call("POST", "session", capabilities)["sessionId"]

    def call(self, method: str, path: str, body: dict | None = None):
        data = json.dumps(body or {}).encode() if method == "POST" else None
        request = urllib.request.Request(f"{self.endpoint}{path}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=300) as response:
            return json.loads(response.read())["value"]

    def page(self, path: str) -> str:
        return f"session/{self.session}/{path}"

    def screenshot(self, url: str, path: Path, size: tuple[int, int], ready: str, seconds: float, then: str) -> None:
        """Open `url` in a window of `size`, wait until the JavaScript expression `ready` is true (at most `seconds`),
        run the script `then`, and write the window to `path` (through a temporary file)."""
        self.call("POST", self.page("window/rect"), {"width": size[0], "height": size[1]})
        self.call("POST", self.page("url"), {"url": url})
        deadline = time.monotonic() + seconds
        while not self.call("POST", self.page("execute/sync"), {"script": f"return Boolean({ready})", "args": []}):
            if time.monotonic() > deadline:
                raise SystemExit(f"docs_screenshots: {url} not ready after {seconds} s ({ready})")
            time.sleep(1)
        if then:
            self.call("POST", self.page("execute/sync"), {"script": then, "args": []})
        time.sleep(2)  # let the last drawing settle
        temporary = path.with_suffix(".tmp.png")
        temporary.write_bytes(base64.b64decode(self.call("GET", self.page("screenshot"))))
        temporary.replace(path)
        print(f"wrote {path.relative_to(REPO)} ({url})")

    def close(self) -> None:
        self.call("DELETE", f"session/{self.session}")


@contextlib.contextmanager
def browser() -> Iterator[Browser]:
    port = free_port()
    driver = [executable("chromedriver", "CHROMEDRIVER", "chromedriver"), f"--port={port}"]
    with serving(driver, port) as endpoint, tempfile.TemporaryDirectory() as profile:
        chromium = Browser(endpoint, profile)
        try:
            yield chromium
        finally:
            chromium.close()


def photograph(root: str, pages: dict) -> None:
    with browser() as chromium:
        for name, (page, size, ready, seconds, then) in pages.items():
            chromium.screenshot(root + page, IMAGES / name, size, ready, seconds, then)


def site() -> None:
    with tempfile.TemporaryDirectory() as folder:
        built = Path(folder) / "site"
        # not `-q`: mkdocs counts the warnings that --strict fails on only at the level it logs
        subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(built)], cwd=REPO, check=True)
        port = free_port()
        server = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(built)]
        with serving(server, port) as root:
            photograph(root, SITE_PAGES)


def tensorboard(runs: Path | None) -> None:
    """Train the runs (into `runs`, kept, unless it already holds them; else into a temporary folder), serve
    TensorBoard on them and photograph it."""
    with tempfile.TemporaryDirectory() as folder:
        work = runs or Path(folder)
        work.mkdir(parents=True, exist_ok=True)
        if not (work / "logs").is_dir():
            (work / "configs").unlink(missing_ok=True)
            (work / "configs").symlink_to(REPO / "configs")
            lit_vir = [sys.executable, "-m", "lit_vir", "fit"]
            for run in RUNS:
                print("lit-vir fit", " ".join(run + RUN_OPTIONS), flush=True)
                subprocess.run([*lit_vir, *run, *RUN_OPTIONS], cwd=work, check=True, stdout=subprocess.DEVNULL)
        port = free_port()
        server = [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            "logs",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        with serving(server, port, cwd=work) as root:
            photograph(root, TENSORBOARD_PAGES)


PARTS = ("tensorboard", "site")  # in this order: the site shows the TensorBoard screenshots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("parts", nargs="*", help=f"which of {', '.join(PARTS)} (default: all)")
    parser.add_argument(
        "--runs",
        type=Path,
        help="tensorboard: the folder of the runs, trained there if it has no logs/ (else temporary)",
    )
    arguments = parser.parse_args()
    unknown = sorted(set(arguments.parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {unknown}; choose from {', '.join(PARTS)}")
    IMAGES.mkdir(parents=True, exist_ok=True)
    for part in arguments.parts or PARTS:
        if part == "tensorboard":
            tensorboard(arguments.runs)
        else:
            site()


if __name__ == "__main__":
    main()
