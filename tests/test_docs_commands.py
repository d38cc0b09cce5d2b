"""Every command line shown in README.md and docs/*.md is one that runs: make targets exist, Hydra
overrides of bnexp-train compose against the schema, and the flags of bnexp-table, the
`python -m bnexp...` modules and scripts/*.py exist in their own --help."""

import functools
import re
import shlex
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from bnexp import models
from bnexp.config import CONFIGS
from bnexp.validation import validate
from tests.conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
STARTS = ("make ", "bnexp-train", "bnexp-table", "python -m bnexp", "python scripts/", "python3 scripts/")


def _commands(text: str) -> list[tuple[str, bool]]:
    """(command line, whether the page shows it refused) from indented code blocks (a `$ ` prompt
    stripped, continuation lines joined; a command whose next line is `bnexp-train: error: ...` is
    shown refused) and from inline code."""
    found: list[tuple[str, bool]] = []
    block = [line.strip() for line in re.sub(r"\\\n\s+", " ", text).splitlines()]
    raw = re.sub(r"\\\n\s+", " ", text).splitlines()
    for i, line in enumerate(raw):
        if line.startswith("    "):
            refused = i + 1 < len(block) and block[i + 1].startswith("bnexp-train: error:")
            found.append((line.strip().removeprefix("$ "), refused))
    found += [(c, False) for c in re.findall(r"`([^`\n]+)`", text)]
    out = {}
    for c, refused in found:
        c = re.sub(r"\s+#.*$", "", c.strip())  # a trailing comment
        if c.startswith(STARTS) and not c.startswith("bnexp-train:"):
            out[c] = out.get(c, False) or refused
    return list(out.items())


ALL = [(page.relative_to(ROOT).as_posix(), c, refused) for page in PAGES for c, refused in _commands(page.read_text())]


def test_the_pages_show_commands_of_every_kind():
    kinds = {next(s for s in STARTS if c.startswith(s)).split()[0] for _, c, _ in ALL}
    assert {"make", "bnexp-train", "bnexp-table", "python"} <= kinds, kinds
    assert len(ALL) >= 30


@functools.cache
def _help(*argv: str) -> str:
    r = subprocess.run([sys.executable, *argv, "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, f"{' '.join(argv)} --help: {r.stderr[-500:]}"
    return r.stdout


def _flags(words: list[str]) -> list[str]:
    return [w.split("=", 1)[0] for w in words if w.startswith("--") and w != "--help"]


def _check_flags(argv: tuple[str, ...], words: list[str]) -> None:
    text = _help(*argv)
    sub = re.search(r"\{([a-z,_-]+)\}", text.split("\n\n")[0] + text)
    positional = [w for w in words if not w.startswith("-")]
    if sub and positional and positional[0] in sub.group(1).split(","):
        text = _help(*argv, positional[0])  # a subcommand's own flags
    for flag in _flags(words):
        assert re.search(rf"(^|[\s\[,]){re.escape(flag)}\b", text), f"{' '.join(argv)}: no flag {flag}"


def _first_values(words: list[str]) -> list[str]:
    """A sweep override at its first value (`model=plain,bn` -> `model=plain`), for composition."""
    out = []
    for w in words:
        key, eq, value = w.partition("=")
        if eq and "," in value and not value.startswith(("[", "'", '"', "{")):
            value = value.split(",")[0]
        out.append(f"{key}={value}" if eq else w)
    return out


@pytest.mark.parametrize("page,command,refused", ALL, ids=[f"{p}: {c[:60]}" for p, c, _ in ALL])
def test_every_command_on_the_pages_parses(page, command, refused):
    if "<" in command or "..." in command:  # a template (`<id>`, `...`): its fixed words are checked below
        command = re.sub(r"\S*(<[^>]*>|\.\.\.)\S*", "", command)
    words = shlex.split(command.replace("|", " "))
    head = words[0]
    if head == "make":
        targets = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))
        asked = [w for w in words[1:] if "=" not in w]
        assert asked and all(t in targets for t in asked[:1]), f"no make target {asked} (Makefile has {targets})"
    elif head == "bnexp-train":
        overrides = [w for w in words[1:] if w not in ("-m", "--multirun", "--cfg", "job", "--help")]
        plugins = {"hydra/launcher": {"joblib"}, "hydra/sweeper": {"bisection", "basic"}}  # registered in code
        for w in overrides:
            group, _, name = w.partition("=")
            if group.startswith("hydra/"):
                assert name in plugins.get(group, set()) or (CONFIGS / group / f"{name}.yaml").is_file(), w
        own = [w for w in _first_values(overrides) if not w.startswith(("hydra.", "hydra/"))]
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
            if refused:  # shown as a mistake the command line refuses: at composition, or by its checks
                with pytest.raises(Exception):  # noqa: B017 (Hydra's, ConfigError: by kind of mistake)
                    typed = OmegaConf.to_object(compose("config", own))
                    validate(typed)
                    models.check(typed)
                return
            compose("config", own)  # a key or a value of the wrong type fails here
    elif head == "bnexp-table":
        _check_flags(("-m", "bnexp.tabulate"), words[1:])
    elif head in ("python", "python3") and words[1] == "-m":
        module = words[2]
        rest = words[3:]
        if module in ("bnexp.report", "bnexp.endpoints", "bnexp.calibration", "bnexp.inventory") and not _flags(rest):
            import importlib.util

            assert importlib.util.find_spec(module) is not None, module
            return
        _check_flags(("-m", module), rest)
    elif head in ("python", "python3"):
        script = words[1]
        assert (ROOT / script).is_file(), script
        _check_flags((script,), words[2:])
    else:
        pytest.fail(f"{page}: no check for {command!r}")


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_relative_link_on_the_pages_exists(page):
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
        assert (page.parent / target).exists(), f"{page.name}: {target}"


def test_the_readme_is_the_newcomers_page():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200
