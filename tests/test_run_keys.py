"""Run keys: a run's folder is named by what it computes (config, data, code outside the
config), and by nothing else."""


from omegaconf import OmegaConf

from bnexp import records
from bnexp.run import provenance
from tests.conftest import make_config


def test_run_key_covers_what_changes_the_numbers_outside_the_config(tmp_path, real_data):
    """CPU threads, the device, torch and the data files' origin change the numbers: they are in the
    key (threads=0 means every core this process may use, so it equals that count spelled out)."""
    from bnexp.resolvers import run_key

    root = f"dataset.root={real_data}"
    one, two = run_key(make_config(root, "threads=1")), run_key(make_config(root, "threads=2"))
    assert one != two
    cores = provenance.cores()
    assert run_key(make_config(root, "threads=0")) == run_key(make_config(root, f"threads={cores}"))
    copy = tmp_path / "cifar-10-batches-py"
    copy.mkdir()
    for f in (real_data / "cifar-10-batches-py").iterdir():
        (copy / f.name).symlink_to(f)
    (copy / "SOURCE").unlink(missing_ok=True)
    (copy / "SOURCE").write_text("official files from www.cs.toronto.edu\n")
    assert run_key(make_config(f"dataset.root={tmp_path}", "threads=1")) != one
    # Not in the key: where the data lives when it is the same data, and labels.
    assert run_key(make_config(root, "threads=1", "name=x")) == one


def test_run_key_depends_on_what_is_computed_only():
    base = records.run_key(make_config("model=bn"))
    assert base == records.run_key(make_config("model=bn"))
    assert base != records.run_key(make_config("model=gn"))
    assert base != records.run_key(make_config("model=bn", "seed=1"))
    # Where the data lives, threads, labels and the profile table do not change the key.
    assert base == records.run_key(make_config("model=bn", "dataset.root=/elsewhere", "threads=1", "name=x",
                                               "profile=smoke"))
    saved = OmegaConf.create(OmegaConf.to_yaml(make_config("model=bn"), resolve=True))
    assert records.run_key(saved) == base  # a stored record has the key of its config
