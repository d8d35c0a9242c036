"""Files and folders that appear whole or not at all: written beside their target, then renamed into place.

A run killed while writing (a prediction CSV, an exported model) leaves the previous version or the new one, never
half of one; a write that fails leaves nothing behind. Shared by every layer, so it imports nothing of lit_vir.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["replaced_atomically", "write_text_atomically"]


@contextmanager
def replaced_atomically(target: str | Path, folder: bool = False) -> Iterator[Path]:
    """A fresh temporary path beside `target` (an empty folder with `folder`) to write to: renamed onto `target`
    when the block ends, removed if it raises. An existing target is replaced (a folder: moved aside, then deleted)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.stem}."
    if folder:
        temporary = Path(tempfile.mkdtemp(prefix=prefix, suffix=".partial", dir=target.parent))
    else:  # the target's suffix kept last: some writers insist on it (torch.export.save wants .pt2)
        handle, name = tempfile.mkstemp(prefix=prefix, suffix=f".partial{target.suffix}", dir=target.parent)
        os.close(handle)
        temporary = Path(name)
    try:
        yield temporary
        if folder and target.exists():
            old = Path(tempfile.mkdtemp(prefix=prefix, suffix=".old", dir=target.parent))
            os.replace(target, old / target.name)
            os.replace(temporary, target)
            shutil.rmtree(old)
        else:
            os.replace(temporary, target)
    except BaseException:
        if temporary.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)
        else:
            temporary.unlink(missing_ok=True)
        raise


def write_text_atomically(path: str | Path, text: str) -> None:
    with replaced_atomically(path) as temporary:
        temporary.write_text(text)
