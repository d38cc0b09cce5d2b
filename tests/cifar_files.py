"""Small CIFAR files in the official formats, for tests that must not need the real data."""

import pickle
import struct
from pathlib import Path

import numpy as np


class Py2Pickler(pickle._Pickler):
    """Protocol 2 as Python 2 wrote the official files: every str and bytes as a BINSTRING.

    Python 3's own protocol-2 pickles wrap bytes in `_codecs.encode` instead (`dump_py3`), which
    bnexp's reader accepts too.
    """

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_string(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_string
    dispatch[bytes] = save_py2_string


def dump(path: Path, obj) -> None:
    with path.open("wb") as f:
        Py2Pickler(f, protocol=2).dump(obj)


def dump_py3(path: Path, obj) -> None:
    """As a genuine batch re-saved by Python 3 (protocol 2: bytes via `_codecs.encode`)."""
    path.write_bytes(pickle.dumps(obj, protocol=2))


def images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3072), dtype=np.uint8)


def write_cifar10(root: Path, per_file: int = 20) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        dump(folder / name, {"batch_label": name, "labels": [j % 10 for j in range(per_file)],
                             "data": images(per_file, i), "filenames": [f"{j}.png" for j in range(per_file)]})
    dump(folder / "batches.meta", {"label_names": [f"c{j}" for j in range(10)], "num_cases_per_batch": per_file})
    return folder


def write_cifar100(root: Path, n_train: int = 200, n_test: int = 100) -> Path:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        fine = [j % 100 for j in range(n)]
        dump(folder / name, {"batch_label": name, "fine_labels": fine, "coarse_labels": [f // 5 for f in fine],
                             "data": images(n, seed), "filenames": [f"{j}.png" for j in range(n)]})
    dump(folder / "meta", {"fine_label_names": [str(j) for j in range(100)],
                           "coarse_label_names": [str(j) for j in range(20)]})
    return folder
