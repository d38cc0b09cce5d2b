#!/usr/bin/env python3
"""Put CIFAR-10 or CIFAR-100 in the official python layout under ROOT.

    python scripts/get_data.py [--root data] [--shared ../shared] [--source auto|shared|download] cifar10

An existing extracted folder is accepted as it is (its structure is checked, not its md5: the
offline copy's files differ from the official ones by design). Otherwise, with `--source auto`,
the offline CIFAR-10 copy in SHARED is used when it is present and the official host cannot
be reached; in every other case the official archive is downloaded with a progress bar and
its md5 checked before it is unpacked. A SOURCE file beside the data says which it was.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import urllib.request
from pathlib import Path

from tqdm import tqdm

HOST = "www.cs.toronto.edu"
ARCHIVES = {  # name: (url, md5 of the official archive, folder inside it, files it must hold)
    "cifar10": (f"https://{HOST}/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a",
                "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]),
    "cifar100": (f"https://{HOST}/~kriz/cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85",
                 "cifar-100-python", ["train", "test", "meta"]),
}
MIN_BYTES = 1_000_000  # every official data file is at least 30 MB; a stub is not data


def present(folder: Path, files: list[str]) -> bool:
    return all((folder / f).is_file() and ((folder / f).stat().st_size > MIN_BYTES or "meta" in f)
               for f in files)


def reachable(host: str, timeout_s: float = 3.0) -> bool:
    """Whether a TCP connection to host:443 opens within timeout_s. The name lookup ignores
    socket timeouts, so the whole attempt runs in a thread that is abandoned when it is late."""
    ok: list[bool] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, 443), timeout=timeout_s).close()
            ok.append(True)
        except OSError:
            pass

    t = threading.Thread(target=attempt, daemon=True)
    t.start()
    t.join(timeout_s)
    return bool(ok)


def from_shared(shared: Path, root: Path) -> None:
    build = shared / "data" / "cifar10" / "build.py"
    subprocess.run([sys.executable, str(build), str(root)], check=True)
    (root / "cifar-10-batches-py" / "SOURCE").write_text(
        "offline copy (JPEG quality 75 round trip of the official images)\n")


def download(name: str, root: Path) -> None:
    url, md5, folder, _ = ARCHIVES[name]
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        archive = Path(tmp) / url.rsplit("/", 1)[1]
        digest = hashlib.md5()
        with urllib.request.urlopen(url, timeout=60) as r, archive.open("wb") as f:
            total = int(r.headers.get("Content-Length", 0)) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=archive.name) as bar:
                while chunk := r.read(1 << 20):
                    f.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        if digest.hexdigest() != md5:
            sys.exit(f"get_data: {url}: md5 {digest.hexdigest()} is not the official {md5}; nothing was unpacked")
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        shutil.move(str(Path(tmp) / folder), str(root / folder))
    (root / folder / "SOURCE").write_text(f"official archive {url} (md5 {md5} verified)\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset", choices=sorted(ARCHIVES))
    p.add_argument("--root", type=Path, default=Path("data"))
    p.add_argument("--shared", type=Path, default=Path("../shared"))
    p.add_argument("--source", choices=("auto", "shared", "download"), default="auto")
    a = p.parse_args()
    _, _, folder, files = ARCHIVES[a.dataset]
    a.root.mkdir(parents=True, exist_ok=True)
    if present(a.root / folder, files):
        print(f"get_data: {a.root / folder} is present")
        return
    if (a.root / folder).exists():
        sys.exit(f"get_data: {a.root / folder} is incomplete; remove it and run again")
    has_copy = a.dataset == "cifar10" and (a.shared / "data" / "cifar10" / "build.py").is_file()
    if a.source == "shared" or (a.source == "auto" and has_copy and not reachable(HOST)):
        if not has_copy:
            sys.exit(f"get_data: no offline copy at {a.shared}/data/cifar10 (only CIFAR-10 has one)")
        from_shared(a.shared, a.root)
    else:
        download(a.dataset, a.root)
    print(f"get_data: wrote {a.root / folder}")


if __name__ == "__main__":
    main()
