"""Bad input through the real command line: one line naming the key or file, a non-zero exit,
and nothing written; in a sweep, refused before the first job trains."""

import os
import subprocess
import sys

import pytest

from tests.cifar_files import dump, images, write_cifar10

TINY = ["dataset.subset=64", "dataset.test_size=100", "train.batch_size=32", "train.max_steps=2", "threads=1"]


def cli(tmp_path, *overrides, data=None, sweep=False):
    """Run `bnexp-train` in tmp_path; returns (process, the folder it was told to write into)."""
    out = tmp_path / "results"
    where = [f"hydra.sweep.dir={out}"] if sweep else [f"hydra.run.dir={out / 'one'}"]
    env = os.environ | ({"BNEXP_DATA": str(data)} if data else {})
    r = subprocess.run([sys.executable, "-m", "bnexp.cli", *(["-m"] if sweep else []), *where, *overrides],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300, env=env)
    return r, out


def one_line(r) -> str:
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bnexp-train: error: "), r.stderr[-3000:]
    return lines[0].removeprefix("bnexp-train: error: ")


CONFIGS = [
    (["model.nrm=batch"], "model.nrm: Key 'nrm' not in 'ModelConfig'"),
    (["optim.lr=fast"], "optim.lr: Value 'fast' of type 'str' could not be converted to Float"),
    (["model.norm=batchy"], "model.norm: Invalid value 'batchy', expected one of [none, batch, group"),
    (["model=bigger"], "model=bigger: no such option (options: bn, bn_dropout, dropout,"),
    (["experiment=nope"], "experiment=nope: no such option (options: bn_gradient_explosion, convergence,"),
    (["+optim.lrr=0.1"], "optim.lrr: not a key of OptimConfig (a typo?)"),
    (["optim.lr=0"], "optim.lr: must be > 0, got 0.0"),
    (["optim.lr=inf"], "optim.lr: must be a finite number, got inf"),
    (["optim.lr=1e400"], "optim.lr: must be a finite number, got inf"),
    (["optim.lr=nan"], "optim.lr: must be a finite number, got nan"),
    (["optim.weight_decay=inf"], "optim.weight_decay: must be a finite number, got inf"),
    (["init=normal", "init.std=inf"], "init.std: must be a finite number, got inf"),
    (["init.scale=-1"], "init.scale: must be > 0, got -1.0"),
    (["optim.momentum=1.5"], "optim.momentum: must be in [0, 1), got 1.5"),
    (["optim=adam", "optim.betas=[0.9]"], "optim.betas: must be two numbers in [0, 1), got [0.9]"),
    (["schedule.warmup=1.0"], "schedule.warmup: must be in [0, 1), got 1.0"),
    (["train.epochs=0"], "train.epochs: must be >= 1, got 0"),
    (["model.dropout=1.0"], "model.dropout: must be in [0, 1), got 1.0"),
    (["model=gn", "model.groups=3"], "model.groups: 3 groups do not divide 32 channels"),
    (["model=ghost_bn", "train.batch_size=40"], "model.virtual_batch: 16 does not divide train.batch_size=40"),
    (["model=resnet20", "model.depth=21"], "model.depth: resnet depth must be 6n+2"),
    (["dataset.subset=50001"], "dataset.subset: 50001 is larger than the 50000 training images"),
    (["dataset.subset=5"], "dataset.subset: 5 training images cannot hold one of each of the 10 classes"),
    (["dataset.subset=100", "train.batch_size=512"], "train.batch_size: 512 is larger than the 100 training images"),
    (["model=fc_sigmoid", "model.norm=frozen_batch", "train.batch_size=1", "dataset.subset=10"],
     "train.batch_size: batch norm on a fully connected net needs at least 2 images per statistic"),
    (["train.probe_layer=last", "train.probe_unit=999"], "train.probe_unit: 999 is not a unit of every layer"),
    (["threads=-1"], "threads: must be >= 0 (0 = default), got -1"),
    (["logger.mode=sometimes"], "logger.mode: must be offline, online or disabled, got 'sometimes'"),
    (["device=tpu"], "device: must be auto, cpu, cuda[:N] or mps, got 'tpu'"),
    (["device=cuda"], "device: cuda asked for, but no CUDA device is available"),
    (["device=cuda:0"], "device: cuda:0 asked for, but no CUDA device is available"),
    (["device=mps"], "device: mps asked for, but MPS is not available on this machine"),
    (["train.probe_layer=nope", *TINY], "train.probe_layer:"),
    # More ranks than the machine has devices (CPU cores for gloo processes) is refused before any starts.
    (["train.devices=64", "train.batch_size=128", "dataset.subset=512"], "train.devices: 64 "),
]


@pytest.fixture(scope="module")
def refused(tmp_path_factory, real_data):
    """Every bad config through its own `bnexp-train` process, four at a time (each is a fresh
    interpreter start, so running them side by side saves most of the wait)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(case):
        folder = tmp_path_factory.mktemp("refused")
        return cli(folder, *case[0], data=real_data)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip([" ".join(c[0]) for c in CONFIGS], pool.map(one, CONFIGS), strict=True))


@pytest.mark.parametrize("overrides,expected", CONFIGS, ids=[" ".join(c[0]) for c in CONFIGS])
def test_a_bad_config_is_one_line_and_writes_nothing(refused, overrides, expected):
    if overrides[0].startswith("device=cuda") and __import__("torch").cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    r, out = refused[" ".join(overrides)]
    assert r.returncode == 2
    assert one_line(r).startswith(expected), r.stderr
    assert not out.exists() and not any(out.parent.glob("*/summary.json"))


def test_one_bad_value_refuses_the_whole_sweep_before_any_job_trains(tmp_path, real_data):
    r, out = cli(tmp_path, "optim.lr=0.1,-1", *TINY, data=real_data, sweep=True)
    assert r.returncode == 2
    assert one_line(r) == "job optim.lr=-1: optim.lr: must be > 0, got -1.0"
    assert not any(out.rglob("summary.json")) and not any(out.rglob("config.yaml"))


def test_a_device_this_machine_lacks_refuses_the_sweep(tmp_path, real_data):
    if __import__("torch").cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    r, out = cli(tmp_path, "device=cuda,cpu", *TINY, data=real_data, sweep=True)
    assert r.returncode == 2 and one_line(r).startswith("job device=cuda: device: cuda asked for")
    assert not any(out.rglob("config.yaml"))


def _string_labels(tmp_path):
    data = tmp_path / "data"
    folder = write_cifar10(data, per_file=20)
    dump(folder / "data_batch_3", {"labels": ["cat"] * 20, "data": images(20, 3)})
    return data, folder / "data_batch_3"


def test_string_labels_in_a_data_file_are_one_line(tmp_path):
    data, bad = _string_labels(tmp_path)
    r, out = cli(tmp_path, "dataset.subset=40", "dataset.test_size=0", "train.batch_size=10", data=data)
    assert r.returncode == 2 and one_line(r).startswith(f"{bad}: 'labels' are not integer class indices")
    assert not out.exists()
    r, out = cli(tmp_path, "seed=0,1", "dataset.subset=40", "train.batch_size=10", data=data, sweep=True)
    assert r.returncode == 2 and one_line(r).startswith(f"job seed=0: {bad}: 'labels' are not integer")
    assert not any(out.rglob("config.yaml"))


def _read_only(path):
    """Make `path` refuse new files, for root too (chattr +i) or as a plain user (chmod)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
            pytest.skip("chattr +i is not available here")
        return lambda: subprocess.run(["chattr", "-i", str(path)], check=True)
    path.chmod(0o555)
    return lambda: path.chmod(0o755)


def test_a_read_only_results_folder_is_one_line(tmp_path, real_data):
    out = tmp_path / "results"
    undo = _read_only(out)
    try:
        r, _ = cli(tmp_path, *TINY, data=real_data)
        assert r.returncode == 2
        assert "results/one" in one_line(r) and ("Operation not permitted" in r.stderr or "denied" in r.stderr)
        r, _ = cli(tmp_path, "seed=0,1", *TINY, data=real_data, sweep=True)
        assert r.returncode != 0 and len(r.stderr.strip().splitlines()) <= 4, r.stderr
    finally:
        undo()
    assert not any(out.iterdir())


def test_a_results_folder_without_room_for_the_record_is_refused_before_training(tmp_path, real_data):
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(small)],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        r = subprocess.run([sys.executable, "-m", "bnexp.cli", f"hydra.run.dir={small / 'one'}", *TINY],
                           capture_output=True, text=True, cwd=tmp_path, timeout=300,
                           env=os.environ | {"BNEXP_DATA": str(real_data)})
        assert r.returncode == 2
        assert "MiB free, a run here needs about" in one_line(r) and str(small) in one_line(r)
        assert not any(small.iterdir())
    finally:
        subprocess.run(["umount", str(small)], check=True)
