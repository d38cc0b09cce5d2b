"""Files written whole or not at all: the one atomic write every writer of a record, a table, a
report or the ledger uses."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


class InputError(ValueError):
    """A file or argument that is not what bnexp made or accepts (a hand-edited, truncated or
    duplicated table, a corrupt JSON or YAML file, a bad option): str(e) is the one line that says
    what is wrong and where; every command exits with it, never with a traceback."""


class WriteError(OSError):
    """A file that cannot be written (full disk, read-only folder); one line."""


def unwritable(folder: Path) -> OSError | None:
    """Why `folder` cannot take a file (made if absent), or None: probed with an empty file."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".bnexp-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        return e
    return None


def write_atomic(path: Path, data: bytes | str | Callable[[Path], None]) -> None:
    """Write `data` (bytes, text, or a function that writes a file at the path it is given) to a
    temporary file beside `path`, then rename it into place; removed if anything fails, so a
    reader sees the old file or the new one, never part of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # two processes writing one file never share it
    try:
        if callable(data):
            data(tmp)
        elif isinstance(data, str):
            tmp.write_text(data)
        else:
            tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as e:
        raise WriteError(f"{path}: could not be written ({e.strerror or e}); nothing partial was left") from None
    finally:
        tmp.unlink(missing_ok=True)


def results_folder(prog: str, doc: str | None, needs: str) -> Path:
    """The one argument of a `python -m bnexp.<step> <folder>` command: `--help` prints the module's
    docstring; a folder without `needs` (a file or folder in it) is refused in one line, exit 2,
    before anything is read or written."""
    import argparse

    p = argparse.ArgumentParser(prog=f"python -m {prog}", description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path, help=f"a profile's results folder (results/<profile>), holding {needs}")
    folder = p.parse_args().folder
    if not (folder / needs).exists():
        what = f"{needs}/ folder" if needs == "runs" else needs
        p.exit(2, f"{prog.split('.')[-1]}: {folder} has no {what}: give a profile's results folder "
                  f"(results/<profile>); for any other folder of run records: bnexp-table {folder}\n")
    return folder
