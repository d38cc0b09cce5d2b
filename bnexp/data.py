"""CIFAR-10/100 from the official python files to augmented batches on the training device.

The whole data set lives on the device as uint8 (N, 3, 32, 32): 150 MB for CIFAR-10. Crops and
flips are done for a whole batch at once with tensor indexing, which on a GPU is far faster
than a DataLoader with per-image Python, and on a CPU avoids worker processes entirely.
"""

from __future__ import annotations

import codecs
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from bnexp.config import Dataset, DatasetConfig, num_classes

FOLDERS = {Dataset.cifar10: "cifar-10-batches-py", Dataset.cifar100: "cifar-100-python"}
TRAIN_FILES = {Dataset.cifar10: [f"data_batch_{i}" for i in range(1, 6)], Dataset.cifar100: ["train"]}
TEST_FILES = {Dataset.cifar10: ["test_batch"], Dataset.cifar100: ["test"]}
HOW_TO_GET = "get it with `make data` (or `python scripts/get_data.py --root DIR cifar10|cifar100`)"


class DataError(ValueError):
    """A data file that is missing, truncated, tampered with or not CIFAR; one line."""


# --- reading the official files ---------------------------------------------------------------

def _numpy_reconstruct():
    try:  # numpy >= 2 moved the module; files written by numpy 1 still name the old path
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # pragma: no cover - numpy 1
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class _CifarUnpickler(pickle.Unpickler):
    """Only what the official files contain: dicts, lists, strings, bytes and numpy arrays.

    A pickle can name any importable callable and have it run while loading; refusing every
    other global means a tampered file fails here instead of running code.
    """

    ALLOWED: ClassVar[dict] = {
        ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
        # Python 3 pickles bytes with protocol 2 as _codecs.encode(text, "latin1"): a file re-saved
        # that way is still the official data. encode only turns a str into bytes.
        ("_codecs", "encode"): lambda: codecs.encode,
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it references {module}.{name}")
        return self.ALLOWED[(module, name)]()


def _load(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"{path}: not found; {HOW_TO_GET}")
    try:
        with path.open("rb") as f:
            obj = _CifarUnpickler(f, encoding="latin1").load()
    except pickle.UnpicklingError as e:
        if "references" in str(e):
            raise DataError(f"{path}: refused, not an official CIFAR file ({e}); {HOW_TO_GET}") from None
        raise DataError(f"{path}: truncated or corrupted ({e}); {HOW_TO_GET}") from None
    except (EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError) as e:
        raise DataError(f"{path}: truncated or corrupted ({type(e).__name__}); {HOW_TO_GET}") from None
    if isinstance(obj, dict):  # re-saved after loading with encoding="bytes" (the CIFAR page's recipe)
        obj = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
    if not isinstance(obj, dict) or "data" not in obj:
        raise DataError(f"{path}: not a CIFAR batch (no 'data' entry); {HOW_TO_GET}")
    return obj


def _images_labels(path: Path, label_key: str, classes: int, part: str) -> tuple[np.ndarray, np.ndarray]:
    batch = _load(path)
    data, labels = batch["data"], batch.get(label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: 'data' is not a uint8 (N, 3072) array; {HOW_TO_GET}")
    if labels is None or not hasattr(labels, "__len__") or len(labels) != len(data):
        raise DataError(f"{path}: '{label_key}' missing or not one per image; {HOW_TO_GET}")
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: '{label_key}' are not integer class indices ({labels.dtype}); {HOW_TO_GET}")
    if len(labels) and (labels.min() < 0 or labels.max() >= classes):
        raise DataError(f"{path}: {part} labels outside [0, {classes}); {HOW_TO_GET}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


# The last data set read in this process, by its files' identity: a sweep worker runs job after
# job on the same files, and unpickling them took about 0.7 s of each quick-profile run.
_LAST: dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}


def _identity(path: Path) -> tuple:
    """What tells a file's contents apart without reading it: path, modification time, size."""
    try:
        st = path.stat()
    except OSError:  # missing: the reader below says which file and how to get it
        return (str(path),)
    return (str(path), st.st_mtime_ns, st.st_size)


def read(cfg: DatasetConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """(train images, train labels, test images, test labels, classes) from the official files.

    Images are uint8 (N, 3, 32, 32), labels int64 (N,). The arrays are read-only and shared by
    every call on the same files (index them to get arrays of one's own): copying all 60,000
    images for every job of a sweep took longer than most of what a job does before it trains.
    """
    folder = Path(cfg.root) / FOLDERS[cfg.name]
    if not folder.is_dir():
        raise DataError(f"{folder}: not found; {HOW_TO_GET}")
    key = "labels" if cfg.name is Dataset.cifar10 else ("coarse_labels" if cfg.coarse_labels else "fine_labels")
    classes = num_classes(cfg)
    files = [folder / f for f in (*TRAIN_FILES[cfg.name], *TEST_FILES[cfg.name])]
    stamp = (key, classes, *(_identity(f) for f in files))
    if stamp not in _LAST:
        parts = [_images_labels(folder / f, key, classes, "training") for f in TRAIN_FILES[cfg.name]]
        test_x, test_y = _images_labels(folder / TEST_FILES[cfg.name][0], key, classes, "test")
        arrays = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), test_x, test_y)
        for a in arrays:
            a.setflags(write=False)
        _LAST.clear()
        _LAST[stamp] = arrays
    return (*_LAST[stamp], classes)


# --- splits -----------------------------------------------------------------------------------

def balanced_pick(labels: np.ndarray, n: int, classes: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of n images with each class as equally represented as n allows (sorted)."""
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in range(classes)]
    take = np.full(classes, n // classes)
    take[rng.permutation(classes)[: n % classes]] += 1
    if any(t > len(p) for t, p in zip(take, per_class, strict=True)):
        raise DataError(f"cannot pick {n} class-balanced images: a class has too few")
    return np.sort(np.concatenate([p[:t] for t, p in zip(take, per_class, strict=True)]))


def split(labels: np.ndarray, cfg: DatasetConfig, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices), class-balanced and fixed by `split_seed`."""
    rng = np.random.default_rng(cfg.split_seed)
    every = np.arange(len(labels))
    val = balanced_pick(labels, cfg.val_size, classes, rng) if cfg.val_size else every[:0]
    rest = np.setdiff1d(every, val)
    if cfg.subset > len(rest):
        raise DataError(f"dataset.subset: {cfg.subset} is larger than the {len(rest)} training images available")
    if cfg.subset:
        rest = rest[balanced_pick(labels[rest], cfg.subset, classes, rng)]
    return rest, val


# --- on the device ----------------------------------------------------------------------------

PAD = 4  # pixels of zero padding for the random crop


def augment(x: torch.Tensor, gen: torch.Generator, part: slice = slice(None), batch: int = 0) -> torch.Tensor:
    """Random 32x32 crop of the zero-padded image and a random horizontal flip, per image.

    x: uint8 (N, C, H, W) on any device; returns the same shape and dtype. With `part` and
    `batch`, x is that slice of a batch of `batch` images: the crops and flips are drawn for the
    whole batch (from `gen`) and those of the slice applied, so that every device of a
    multi-device run draws the same numbers and its images get what one process gives them.
    """
    n, c, h, w = x.shape
    total = batch or n
    dy = torch.randint(0, 2 * PAD + 1, (total,), generator=gen, device=gen.device)[part].to(x.device)
    dx = torch.randint(0, 2 * PAD + 1, (total,), generator=gen, device=gen.device)[part].to(x.device)
    flip = (torch.rand(total, generator=gen, device=gen.device) < 0.5)[part].to(x.device)
    padded = torch.nn.functional.pad(x, (PAD, PAD, PAD, PAD))  # (N, C, H+8, W+8)
    rows = dy[:, None] + torch.arange(h, device=x.device)  # (N, H)
    cols = dx[:, None] + torch.arange(w, device=x.device)  # (N, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)  # a flip reads the columns backwards
    i = torch.arange(n, device=x.device)[:, None, None, None]
    ch = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[i, ch, rows[:, None, :, None], cols[:, None, None, :]]


def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of uint8 (N, C, H, W) images, in [0, 1] units.

    From a 256-bin histogram per channel: exact, and it needs no float copy of the images
    (1.2 GB in float64 for CIFAR-10's training set).
    """
    levels = np.arange(256, dtype=np.float64) / 255.0
    counts = np.stack([np.bincount(x[:, c].reshape(-1), minlength=256) for c in range(x.shape[1])])  # (C, 256)
    n = counts.sum(1)
    mean = counts @ levels / n
    var = (counts * (levels[None, :] - mean[:, None]) ** 2).sum(1) / n
    return mean, np.sqrt(var)


@dataclass
class Split:
    x: torch.Tensor  # uint8 (N, 3, 32, 32) on the device
    y: torch.Tensor  # int64 (N,)

    def __len__(self) -> int:
        return len(self.y)


class Data:
    """Training, validation and test splits on one device, normalised per channel on the fly."""

    def __init__(self, cfg: DatasetConfig, device: torch.device, channels_last: bool = False):
        train_x, train_y, test_x, test_y, self.classes = read(cfg)
        train_idx, val_idx = split(train_y, cfg, self.classes)
        mean, std = channel_stats(train_x[train_idx])
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device)
        self.std = torch.tensor(std, dtype=torch.float32, device=device)

        def put(x: np.ndarray, y: np.ndarray) -> Split:
            # A split that is a whole array of `read`'s (no subset) is copied: those are shared.
            own = (np.array(a) if not a.flags.writeable else np.ascontiguousarray(a) for a in (x, y))
            return Split(*(torch.from_numpy(a).to(device) for a in own))

        self.train = put(train_x[train_idx], train_y[train_idx])
        self.val = put(train_x[val_idx], train_y[val_idx])
        if cfg.test_size:
            keep = balanced_pick(test_y, cfg.test_size, self.classes, np.random.default_rng(cfg.split_seed))
            test_x, test_y = test_x[keep], test_y[keep]
        self.test = put(test_x, test_y)
        self.augment = cfg.augment
        self.device = device
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) -> float32, zero mean and unit std per channel."""
        x = x.float().div_(255.0)
        x = x.sub_(self.mean[:, None, None]).div_(self.std[:, None, None])
        return x.contiguous(memory_format=self.memory_format)

    def epoch_order(self, gen: torch.Generator) -> torch.Tensor:
        """The shuffled order of one epoch's training images (drawn from `gen`)."""
        return torch.randperm(len(self.train), generator=gen, device=gen.device).to(self.device)

    def train_batches(self, batch_size: int, gen: torch.Generator, order: torch.Tensor | None = None,
                      start: int = 0, shard: tuple[int, int] = (0, 1)) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of shuffled, augmented batches; the last incomplete batch is dropped
        (a BN statistic over a stray handful of images would be a different experiment).
        `order` and `start` continue an epoch from a checkpoint: its order, and batches done.
        `shard` = (rank, devices): each global batch of `batch_size` is cut into `devices` equal
        slices and rank's slice is yielded; every rank draws the same order and augmentation."""
        rank, devices = shard
        per = batch_size // devices
        part = slice(rank * per, (rank + 1) * per)
        order = self.epoch_order(gen) if order is None else order.to(self.device)
        for k in range(start, len(self.train) // batch_size):
            idx = order[k * batch_size:(k + 1) * batch_size][part]
            x = self.train.x[idx]
            if self.augment:
                x = augment(x, gen, part, batch_size)
            yield self.normalise(x), self.train.y[idx]

    def eval_batches(self, part: Split, batch_size: int, drop_last: bool = False
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The split in order, un-augmented."""
        stop = len(part) - len(part) % batch_size if drop_last else len(part)
        for k in range(0, stop, batch_size):
            yield self.normalise(part.x[k:k + batch_size]), part.y[k:k + batch_size]
