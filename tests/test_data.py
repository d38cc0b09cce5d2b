"""The CIFAR reader on small files in the official formats, written here, and the device-side
augmentation and splits."""

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from bnexp.config import Dataset, DatasetConfig
from bnexp.data import PAD, Data, DataError, augment, balanced_pick, read, split
from tests.cifar_files import dump, dump_py3, images, write_cifar10, write_cifar100


def test_reads_cifar10_in_the_official_layout(tmp_path):
    write_cifar10(tmp_path)
    train_x, train_y, test_x, _, classes = read(DatasetConfig(root=str(tmp_path)))
    assert classes == 10
    assert train_x.shape == (100, 3, 32, 32) and train_x.dtype == np.uint8
    assert test_x.shape == (20, 3, 32, 32)
    # Row layout: 1024 red, then 1024 green, then 1024 blue values, each row-major.
    assert np.array_equal(train_x[0].reshape(-1), images(20, 0)[0])
    assert list(train_y[:12]) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]


def test_a_second_read_of_the_same_files_shares_read_only_arrays_and_a_changed_file_is_read_again(tmp_path):
    folder = write_cifar10(tmp_path)
    cfg = DatasetConfig(root=str(tmp_path))
    first = read(cfg)
    again = read(cfg)
    assert all(a is b for a, b in zip(first[:4], again[:4], strict=True))
    with pytest.raises(ValueError, match="read-only"):  # a caller cannot change what the next one reads
        again[0][:] = 0
    kept = first[0].copy()
    data = Data(cfg, torch.device("cpu"))  # no subset, no test sample: whole arrays, copied onto the device
    data.train.x.zero_()
    data.test.x.zero_()
    assert np.array_equal(read(cfg)[0], kept) and read(cfg)[2].any()
    dump(folder / "test_batch", {"labels": [3] * 7, "data": images(7, 5)})
    changed = read(cfg)
    assert changed[2].shape == (7, 3, 32, 32) and list(changed[3]) == [3] * 7


@pytest.mark.parametrize("coarse,classes", [(False, 100), (True, 20)])
def test_reads_cifar100_fine_or_coarse_labels(tmp_path, coarse, classes):
    write_cifar100(tmp_path)
    cfg = DatasetConfig(name=Dataset.cifar100, root=str(tmp_path), coarse_labels=coarse)
    train_x, train_y, test_x, _, n = read(cfg)
    assert n == classes and train_x.shape == (200, 3, 32, 32) and test_x.shape == (100, 3, 32, 32)
    assert train_y.max() == classes - 1
    assert train_y[7] == (7 // 5 if coarse else 7)


def test_missing_folder_and_file_are_named_with_how_to_get_them(tmp_path):
    with pytest.raises(DataError, match=r"cifar-10-batches-py: not found; get it with `make data`"):
        read(DatasetConfig(root=str(tmp_path)))
    folder = write_cifar10(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match=r"data_batch_3: not found"):
        read(DatasetConfig(root=str(tmp_path)))


def test_truncated_file_is_reported_on_one_line(tmp_path):
    folder = write_cifar10(tmp_path, per_file=50)
    path = folder / "data_batch_2"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError) as e:
        read(DatasetConfig(root=str(tmp_path)))
    assert "data_batch_2: truncated or corrupted" in str(e.value) and "\n" not in str(e.value)


class Payload:
    """Pickles as a call of os.system: what a tampered data file would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["py2", "py3"])
def test_tampered_file_is_refused_without_running_its_code(tmp_path, writer):
    folder = write_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    payload = {"labels": [0], "data": Payload(marker)}
    if writer == "py2":
        dump(folder / "test_batch", payload)
    else:
        (folder / "test_batch").write_bytes(pickle.dumps(payload))
    refused = r"test_batch: refused, not an official CIFAR file \(it references (os|posix)\.system\)"
    with pytest.raises(DataError, match=refused):
        read(DatasetConfig(root=str(tmp_path)))
    assert not marker.exists()


def test_wrong_shapes_and_labels_are_rejected(tmp_path):
    folder = write_cifar10(tmp_path)
    dump(folder / "data_batch_1", {"labels": [0, 1], "data": np.zeros((2, 100), np.uint8)})
    with pytest.raises(DataError, match=r"data_batch_1: 'data' is not a uint8 \(N, 3072\) array"):
        read(DatasetConfig(root=str(tmp_path)))
    dump(folder / "data_batch_1", {"labels": [0, 12], "data": images(2, 0)})
    with pytest.raises(DataError, match=r"training labels outside \[0, 10\)"):
        read(DatasetConfig(root=str(tmp_path)))


def test_a_genuine_batch_re_pickled_by_python3_is_read_like_the_original(tmp_path):
    folder = write_cifar10(tmp_path)
    before = read(DatasetConfig(root=str(tmp_path)))
    for name, encoding in (("data_batch_1", "latin1"), ("test_batch", "bytes")):  # str keys, bytes keys
        with (folder / name).open("rb") as f:
            batch = pickle.load(f, encoding=encoding)
        dump_py3(folder / name, batch)
    assert b"_codecs" in (folder / "test_batch").read_bytes()
    after = read(DatasetConfig(root=str(tmp_path)))
    for a, b in zip(before[:4], after[:4], strict=True):
        assert np.array_equal(a, b)


BAD_FILES = [
    ({"labels": [0, 1], "data": np.zeros((2, 100), np.uint8)}, r"'data' is not a uint8 \(N, 3072\) array"),
    ({"labels": [0, 1], "data": np.zeros((2, 3072), np.float32)}, r"'data' is not a uint8 \(N, 3072\) array"),
    ({"labels": [0, 1], "data": np.zeros((2, 3, 1024), np.uint8)}, r"'data' is not a uint8 \(N, 3072\) array"),
    ({"labels": [0, 1], "data": [[0] * 3072] * 2}, r"'data' is not a uint8 \(N, 3072\) array"),
    ({"labels": [0], "data": np.zeros((2, 3072), np.uint8)}, r"'labels' missing or not one per image"),
    ({"data": np.zeros((2, 3072), np.uint8)}, r"'labels' missing or not one per image"),
    ({"labels": ["cat", "dog"], "data": np.zeros((2, 3072), np.uint8)}, r"'labels' are not integer class indices"),
    ({"labels": [0.5, 1.0], "data": np.zeros((2, 3072), np.uint8)}, r"'labels' are not integer class indices"),
    ({"labels": [0, 12], "data": np.zeros((2, 3072), np.uint8)}, r"training labels outside \[0, 10\)"),
    ([1, 2, 3], r"not a CIFAR batch \(no 'data' entry\)"),
]


@pytest.mark.parametrize("writer", [dump, dump_py3], ids=["py2", "py3"])
@pytest.mark.parametrize("content,message", BAD_FILES)
def test_a_bad_batch_gets_its_own_one_line_reason_however_it_was_pickled(tmp_path, writer, content, message):
    folder = write_cifar10(tmp_path)
    writer(folder / "data_batch_1", content)
    with pytest.raises(DataError, match=r"data_batch_1: " + message) as e:
        read(DatasetConfig(root=str(tmp_path)))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("raw", [b"", b"\x80\x02garbage", b"not a pickle at all"])
def test_files_that_are_not_pickles_are_named(tmp_path, raw):
    folder = write_cifar10(tmp_path)
    (folder / "test_batch").write_bytes(raw)
    with pytest.raises(DataError, match="test_batch: truncated or corrupted"):
        read(DatasetConfig(root=str(tmp_path)))


def test_subset_and_validation_split_are_balanced_disjoint_and_fixed_by_split_seed():
    labels = np.repeat(np.arange(10), 50)
    cfg = DatasetConfig(subset=103, val_size=40, split_seed=3)
    train, val = split(labels, cfg, 10)
    assert len(train) == 103 and len(val) == 40 and not set(train) & set(val)
    assert sorted(np.bincount(labels[train])) == [10] * 7 + [11] * 3
    assert list(np.bincount(labels[val])) == [4] * 10
    again, _ = split(labels, cfg, 10)
    other, _ = split(labels, DatasetConfig(subset=103, val_size=40, split_seed=4), 10)
    assert np.array_equal(train, again) and not np.array_equal(train, other)
    with pytest.raises(DataError, match=r"dataset\.subset: 500 is larger than the 460"):
        split(labels, DatasetConfig(subset=500, val_size=40), 10)


def test_balanced_pick_refuses_when_a_class_is_short():
    with pytest.raises(DataError, match="a class has too few"):
        balanced_pick(np.array([0, 0, 0, 1]), 4, 2, np.random.default_rng(0))


def test_augment_is_a_padded_crop_with_optional_flip_of_each_image():
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = augment(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(x, (PAD,) * 4)
    seen_offsets, flips = set(), 0
    def window(k, dy, dx, flipped):
        w = padded[k, :, dy:dy + 32, dx:dx + 32]
        return w.flip(2) if flipped else w

    for k in range(len(x)):
        matches = [(dy, dx, f) for dy in range(2 * PAD + 1) for dx in range(2 * PAD + 1) for f in (0, 1)
                   if torch.equal(out[k], window(k, dy, dx, f))]
        assert len(matches) == 1, k  # exactly one crop window explains each output image
        seen_offsets.add(matches[0][:2])
        flips += matches[0][2]
    assert len(seen_offsets) > 20 and 16 < flips < 48
    again = augment(x, torch.Generator().manual_seed(1))
    assert torch.equal(out, again)


def test_data_on_device_normalises_batches_and_yields_deterministic_epochs(tmp_path):
    write_cifar10(tmp_path, per_file=40)
    data = Data(DatasetConfig(root=str(tmp_path), subset=120, test_size=20), torch.device("cpu"))
    assert len(data.train) == 120 and len(data.test) == 20 and len(data.val) == 0
    x = data.normalise(data.train.x)
    assert torch.allclose(x.mean((0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(x.std((0, 2, 3)), torch.ones(3), atol=1e-3)
    epoch = list(data.train_batches(32, torch.Generator().manual_seed(0)))
    assert len(epoch) == 3 and epoch[0][0].shape == (32, 3, 32, 32)  # 120 // 32, the rest dropped
    again = list(data.train_batches(32, torch.Generator().manual_seed(0)))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(epoch, again, strict=True))
    assert sum(len(y) for _, y in data.eval_batches(data.test, 7)) == 20


def test_channel_stats_equal_the_direct_float_computation():
    from bnexp.data import channel_stats

    x = np.random.default_rng(0).integers(0, 256, (50, 3, 4, 4), dtype=np.uint8)
    mean, std = channel_stats(x)
    f = x.astype(np.float64) / 255.0
    assert np.allclose(mean, f.mean((0, 2, 3)), atol=1e-14) and np.allclose(std, f.std((0, 2, 3)), atol=1e-14)
