"""The ``nnunet_tcup`` console command.

Each subcommand lives next to the code it drives, in a module exposing ``register(subparsers)``, which adds one
or more sub-parsers and sets ``func`` (called with the parsed ``argparse.Namespace``, returning an exit code).
Modules are imported here only for their parsers; heavy imports (torch, nnunetv2) happen inside ``func``.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

from nnunet_tcup import __version__

#: Modules that register subcommands, in the order they are listed by ``nnunet_tcup -h``.
SUBCOMMAND_MODULES = (
    "nnunet_tcup.demo.cli",                # demo
    "nnunet_tcup.synthetic.cli",           # synth
    "nnunet_tcup.dataset_conversion.cli",  # convert, export
    "nnunet_tcup.evaluation.cli",          # evaluate
    "nnunet_tcup.postprocessing.cli",      # postprocess {preset,tune,apply}
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnunet_tcup",
        description="TCuP-GAN for BraTS 2023 with nnU-Net v2: synthetic data, BraTS <-> nnU-Net conversion, "
        "lesion-wise evaluation and the paper's lesion filter. Training and prediction use the stock "
        "nnUNetv2_* commands with -tr nnUNetTrainerTCuPGAN.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
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


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"nnunet_tcup {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"nnunet_tcup {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
