"""The documentation: a short README whose links resolve, no machine-specific paths, and every ``nnunet_tcup``
command in a code block of README.md, CONTRIBUTING.md and docs/*.md accepted by the real CLI parser."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from nnunet_tcup import cli

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = [README, ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
#: Absolute folders of one machine (where figures were measured, a user's home): never in docs or benchmark defaults.
MACHINE_PATHS = re.compile(r"(?<![\w.])/(?:work|tmp|root|home|Users)/")
MAX_README_LINES = 250


def _code_blocks(text: str) -> list[str]:
    """The bash blocks (plain blocks hold synopses such as ``[-f FOLD ...]``, not commands)."""
    return re.findall(r"```(?:bash|sh)\n(.*?)```", text, re.S)


def _expand(line: str) -> str:
    """Shell variables replaced by plausible values: job-array indices by 0, others by a folder."""
    return re.sub(r"\$\{?(\w+)\}?", lambda m: "0" if m.group(1).startswith("SLURM") else f"/data/{m.group(1)}", line)


def _command_lines(text: str) -> list[str]:
    """Shell lines (continuations joined, comments dropped) starting with ``nnunet_tcup`` or ``.venv/bin/nnunet_tcup``
    in the code blocks of ``text``."""
    lines = []
    for block in _code_blocks(text):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0].endswith("nnunet_tcup"):
                lines.append(line)
    return lines


def test_docs_exist_and_readme_is_short():
    assert {p.name for p in DOCS} >= {
        "README.md",
        "CONTRIBUTING.md",
        "demo.md",
        "trainer.md",
        "postprocessing.md",
        "evaluation.md",
        "review.md",
        "benchmarks.md",
    }
    assert len(README.read_text().splitlines()) <= MAX_README_LINES


@pytest.mark.parametrize("path", [*DOCS, *sorted((ROOT / "benchmarks").glob("*.py"))], ids=lambda p: p.name)
def test_no_machine_specific_paths(path):
    hits = [
        f"{path.name}:{n}: {line.strip()}"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if MACHINE_PATHS.search(line)
    ]
    assert not hits, "machine-specific absolute paths:\n" + "\n".join(hits)


def test_the_path_check_catches_what_it_is_for():
    # the bad examples are assembled from their roots so that this file itself holds no machine-specific path
    work, tmp, root, home = (f"/{name}/" for name in ("work", "tmp", "root", "home"))
    for bad in (f"--work-dir {work}demo_quick", f"default=Path('{tmp}x')", f"see {root}.cache/", f"in {home}me/data"):
        assert MACHINE_PATHS.search(bad), bad
    for fine in ("$nnUNet_raw/Dataset231/imagesTs", "/data/nnUNet_raw", "docs/trainer.md", "pred_folds/fold_0"):
        assert not MACHINE_PATHS.search(fine), fine


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_relative_links_resolve(path):
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        assert (path.parent / target).exists(), f"{path.name} links to missing {target}"


def _strict_parser():
    """The CLI's parser with abbreviations off everywhere, so that ``--work`` does not pass for ``--work-dir``."""
    import argparse

    parser = cli.build_parser()
    todo = [parser]
    while todo:
        p = todo.pop()
        p.allow_abbrev = False
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo.extend(action.choices.values())
    return parser


def test_strict_parser_refuses_abbreviations():
    with pytest.raises(SystemExit):
        _strict_parser().parse_args(["demo", "--work", "demo_output"])
    assert _strict_parser().parse_args(["demo", "--work-dir", "demo_output"]).work_dir == "demo_output"


def _commands() -> list[tuple[str, str]]:
    return [(p.name, line) for p in DOCS for line in _command_lines(p.read_text())]


def test_the_docs_show_commands():
    names = {shlex.split(line, comments=True)[1] for _, line in _commands()}
    assert {"demo", "convert", "evaluate", "export", "postprocess", "review"} <= names


@pytest.mark.parametrize("doc, line", _commands())
def test_every_documented_command_parses(doc, line):
    """The documented options exist with these names and values (a renamed or removed option fails here)."""
    argv = shlex.split(_expand(line), comments=True)[1:]
    registered = cli.build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    if argv[0] not in registered:
        assert argv[0] == "predict", f"{doc}: unknown command in: {line}"
        pytest.skip("nnunet_tcup predict is not registered in this build")
    try:
        _strict_parser().parse_args(argv)
    except SystemExit as e:  # argparse's usage error
        raise AssertionError(f"{doc}: does not parse ({e.code}): {line}") from None
