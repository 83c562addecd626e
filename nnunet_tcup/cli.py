"""The ``nnunet_tcup`` console command.

Each subcommand lives next to the code it drives, in a module exposing ``register(subparsers)``, which adds one
or more sub-parsers and sets ``func`` (called with the parsed ``argparse.Namespace``, returning an exit code).
Modules are imported here only for their parsers; heavy imports (torch, nnunetv2) happen inside ``func``.

Errors: every ``ValueError`` and ``OSError`` (permission denied, a path under a file, a full disk, ...) that reaches
:func:`main` is printed as ``nnunet_tcup CMD: error: PATH: PROBLEM`` on one line (line breaks in a library's message
are joined; only :class:`nnunet_tcup.errors.ErrorList` lists one problem per line) with exit code 1; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from pathlib import Path

from nnunet_tcup import __version__

__all__ = ["SUBCOMMAND_MODULES", "build_parser", "describe_os_error", "error_message", "main"]

#: Modules that register subcommands, in the order they are listed by ``nnunet_tcup -h``.
SUBCOMMAND_MODULES = (
    "nnunet_tcup.demo.cli",  # demo
    "nnunet_tcup.prediction.cli",  # predict
    "nnunet_tcup.synthetic.cli",  # synth
    "nnunet_tcup.dataset_conversion.cli",  # convert, export
    "nnunet_tcup.evaluation.cli",  # evaluate
    "nnunet_tcup.postprocessing.cli",  # postprocess {preset,tune,apply}
    "nnunet_tcup.review.cli",  # review
)

_ERRNO_PROBLEMS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.ENOENT: "no such file or directory",
    errno.EISDIR: "is a directory, a file is needed here",
    errno.ENAMETOOLONG: "file name too long",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnunet_tcup",
        description="TCuP-GAN for BraTS 2023 with nnU-Net v2: synthetic data, BraTS <-> nnU-Net conversion, "
        "lesion-wise evaluation, the paper's lesion filter and a review of the cases the folds disagree on "
        "(for human review). Training uses the stock nnUNetv2_train -tr nnUNetTrainerTCuPGAN (found by nnU-Net "
        "after pip install); `predict` segments BraTS cases with a trained model in one command. Exit codes: 0 "
        "success, 1 an error while running (one line, --debug for the traceback), 2 a usage error (argparse).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of an error instead of its one-line message"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name == module_name:  # a part not built yet; keep the others usable
                continue
            raise
        module.register(subparsers)
    return parser


def _file_ancestor(path: Path) -> Path | None:
    """The first existing ancestor of ``path`` that is not a directory (a path 'under a file'), or None."""
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return None


def describe_os_error(e: OSError) -> str:
    """One line ``PATH: PROBLEM`` for an OSError, in words a user can act on (no ``[Errno N]``)."""
    filename = e.filename if e.filename is not None else e.filename2
    if filename is None:
        return e.strerror or str(e)
    path = Path(os.fsdecode(filename))
    blocker = _file_ancestor(path)
    if isinstance(e, NotADirectoryError) or (blocker is not None and e.errno in (errno.ENOENT, errno.EEXIST)):
        if blocker is not None:
            return f"{path}: {blocker} is a file, not a directory"
        return f"{path}: a part of this path is a file, not a directory"
    if isinstance(e, FileExistsError):
        if path.exists() and not path.is_dir():
            return f"{path}: is a file, but a directory is needed here"
        return f"{path}: already exists"
    problem = _ERRNO_PROBLEMS.get(e.errno or 0, e.strerror or type(e).__name__)
    text = f"{path}: {problem}"
    if e.filename2 is not None and e.filename is not None:
        text += f" (with {os.fsdecode(e.filename2)})"
    return text


def error_message(e: ValueError | OSError) -> str:
    """The text after ``error:``: one line (a library's line breaks joined), except an :class:`ErrorList`, whose
    header and items are one line each."""
    from nnunet_tcup.errors import ErrorList, one_line

    if isinstance(e, ErrorList):
        return str(e)
    return one_line(describe_os_error(e) if isinstance(e, OSError) else str(e))


def _command_name(args: argparse.Namespace) -> str:
    """``convert``, ``postprocess apply``, ...: the words of the command line that chose ``func``."""
    name = str(getattr(args, "command", "") or "")
    action = getattr(args, f"{name}_command", None)
    return f"{name} {action}" if action else name


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    name = _command_name(args)
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError) as e:
        if args.debug:
            raise
        print(f"nnunet_tcup {name}: error: {error_message(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"nnunet_tcup {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
