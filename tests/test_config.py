"""Bad configs stop before any training with one line naming the key, and write nothing."""

import shutil
import subprocess
import sys
from dataclasses import fields

import pytest
from omegaconf import OmegaConf

from bnexp import models
from bnexp.config import ConfigError
from bnexp.validation import validate
from tests.conftest import MODEL_PRESETS, ROOT, make_config


@pytest.mark.parametrize("name", MODEL_PRESETS)
def test_every_model_preset_composes_and_validates(name):
    validate(OmegaConf.to_object(make_config(f"model={name}")))


@pytest.mark.parametrize("overrides,key,words", [
    (["optim.lr=0"], "optim.lr", "must be > 0"),
    (["optim.lr=-0.1"], "optim.lr", "must be > 0"),
    (["train.batch_size=0"], "train.batch_size", "must be >= 1"),
    (["model.dropout=1.0"], "model.dropout", "[0, 1)"),
    (["model.dropout=-0.1"], "model.dropout", "[0, 1)"),
    (["model=gn", "model.groups=5"], "model.groups", "5 groups do not divide 32 channels"),
    (["dataset.subset=60000"], "dataset.subset", "larger than the 50000"),
    (["dataset.subset=45000", "dataset.val_size=10000"], "dataset.subset", "larger than the 40000"),
    (["model=ghost_bn", "train.batch_size=40"], "model.virtual_batch", "does not divide"),
    (["model=resnet20", "model.depth=21"], "model.depth", "6n+2"),
    (["model=vgg", "model.depth=12"], "model.depth", "11, 13, 16, 19"),
    (["model=fc_sigmoid_bn", "train.batch_size=1", "dataset.subset=10"], "train.batch_size", "at least 2"),
    (["schedule=step", "schedule.milestones=[0.5,1.5]"], "schedule.milestones", "(0, 1)"),
    (["init.scale=0"], "init.scale", "> 0"),
    (["train.batch_size=512", "dataset.subset=100"], "train.batch_size", "larger than the 100"),
])
def test_impossible_values_name_their_key(overrides, key, words):
    cfg = OmegaConf.to_object(make_config(*overrides))
    with pytest.raises(ConfigError) as e:
        validate(cfg)
        models.check(cfg)  # what only the net's layout can tell (groups, probed unit)
    assert e.value.key == key and words in str(e.value)


def cli(tmp_path, *overrides):
    run_dir = tmp_path / "runs" / "one"
    r = subprocess.run([sys.executable, "-m", "bnexp.cli", f"hydra.run.dir={run_dir}", *overrides],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    return r, run_dir


def test_cli_names_missing_data_in_one_line(tmp_path):
    r, run_dir = cli(tmp_path, f"dataset.root={tmp_path / 'nowhere'}")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"bnexp-train: error: {tmp_path / 'nowhere' / 'cifar-10-batches-py'}: not found; get it with "
        "`make data` (or `python scripts/get_data.py --root DIR cifar10|cifar100`)"]
    assert not run_dir.exists()


def test_cli_entry_point_is_installed():
    exe = ROOT / ".venv" / "bin" / "bnexp-train"
    if not exe.exists():
        exe = "bnexp-train"
    r = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "model: " in r.stdout and "bn, bn_dropout" in r.stdout


def _bad_profile(tmp_path, text: str):
    """A profile file in a search-path folder of its own, composed through the real command line."""
    folder = tmp_path / "extra" / "profile"
    folder.mkdir(parents=True)
    quick = (ROOT / "configs" / "profile" / "quick.yaml").read_text()
    (folder / "bad.yaml").write_text(text(quick))
    return cli(tmp_path, f"hydra.searchpath=[file://{tmp_path / 'extra'}]", "profile=bad")


def test_a_typo_in_a_profile_fails_like_any_other(tmp_path):
    r, run_dir = _bad_profile(tmp_path, lambda q: q.replace("\nseeds:", "\nseedz:"))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "bnexp-train: error: profile.seedz: Key 'seedz' not in 'Profile' ('profile/bad')"]
    assert not run_dir.exists()


def test_a_typo_in_an_experiments_budget_names_its_budget(tmp_path):
    r, _ = _bad_profile(tmp_path, lambda q: q.replace("lr_tolerance: {subset:", "lr_tolerance: {subsett:"))
    assert r.returncode == 2 and "profile.lr_tolerance.subsett: Key 'subsett' not in 'LrToleranceBudget'" in r.stderr


def test_a_profile_missing_a_budget_is_refused_before_training(tmp_path):
    r, run_dir = _bad_profile(tmp_path, lambda q: "\n".join(ln for ln in q.splitlines()
                                                             if not ln.startswith("gn_groups:")))
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "bnexp-train: error: profile.gn_groups.epochs: Structured config of type `GnGroupsBudget` has missing "
        "mandatory value: epochs"], r.stderr
    assert not run_dir.exists()


def test_experiments_claims_and_profiles_agree():
    """Every experiment config has a typed budget in every profile and a claim that reads it; every
    claim version reads an experiment that exists and is registered. Nothing lists them by hand:
    the budgets' schema is found in the experiment configs."""
    from bnexp import inventory
    from bnexp.config import Profile, experiments
    from bnexp.profile import General

    assert inventory.missing() == []
    budgets = {f.name for f in fields(Profile)} - {f.name for f in fields(General)}
    assert set(experiments()) == budgets
    for name in ("smoke", "quick", "full"):
        OmegaConf.to_object(make_config(f"profile={name}"))  # every budget present and well typed


def test_a_claim_added_without_its_other_parts_is_named_in_one_line_each(tmp_path, monkeypatch):
    """A new experiment config alone: the claim module and every profile's budget line are named,
    each on one line, with the keys the budget needs."""
    from bnexp import inventory

    configs = tmp_path / "configs"
    shutil.copytree(inventory.CONFIGS, configs)
    (configs / "experiment" / "new_claim.yaml").write_text(
        "# @package _global_\ndataset: {subset: \"${profile.new_claim.subset}\"}\n"
        "train: {epochs: \"${profile.new_claim.epochs}\"}\n")
    monkeypatch.setattr(inventory, "CONFIGS", configs)
    lines = inventory.missing()
    assert lines[0] == ("experiment new_claim: no claim version reads it: add bnexp/claims/new_claim.py with a "
                        "Version(experiment='new_claim', ...)")
    assert sorted(lines[1:]) == [f"configs/profile/{p}.yaml: no budget for experiment new_claim: add a line "
                                 "`new_claim: {epochs: ..., subset: ...}`" for p in ("full", "long", "quick", "smoke")]
