"""Only what ``pyproject.toml`` cannot express: shipping the discovery ``.pth`` file.

Everything else (metadata, dependencies, console script, version) lives in ``pyproject.toml``.

Why a ``.pth``: nnU-Net 2.8 finds trainers by class name in its own folder and in the folders listed in the
environment variable ``nnUNet_extTrainer``; it has no entry-point mechanism. A ``.pth`` file in site-packages runs one
``import`` line at interpreter start-up, and ``_nnunet_tcup_discovery`` appends our shim folder to that variable, so
the stock ``nnUNetv2_*`` commands find ``nnUNetTrainerTCuPGAN`` with no set-up. A ``.pth`` must sit at the root of
site-packages, which package data cannot reach, hence these two hooks:

- normal installs (``pip install .``): ``build_py`` writes the ``.pth`` at the root of the build folder, which becomes
  the root of the wheel, i.e. site-packages;
- editable installs (``pip install -e .``, PEP 660): setuptools builds a separate "editable" wheel; the only place to
  add a file to it is the strategy object setuptools selects, so we wrap it. The wrap is guarded: on a setuptools
  without that hook, editable installs still work but need ``nnUNet_extTrainer`` set by hand (README).
"""

from __future__ import annotations

import os

from setuptools import setup
from setuptools.command.build_py import build_py

PTH_FILE = "nnunet_tcup_trainers.pth"
PTH_LINE = "import _nnunet_tcup_discovery\n"


class BuildPyWithPth(build_py):
    """``build_py`` that also places the discovery ``.pth`` at the wheel root (site-packages once installed)."""

    def run(self) -> None:
        super().run()
        os.makedirs(self.build_lib, exist_ok=True)
        with open(os.path.join(self.build_lib, PTH_FILE), "w") as f:
            f.write(PTH_LINE)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), os.path.join(self.build_lib, PTH_FILE)]


class _StrategyAddingPth:
    """Wraps setuptools' editable strategy so that the editable wheel also carries the discovery ``.pth``."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, wheel, files, mapping):
        self.inner(wheel, files, mapping)
        wheel.writestr(PTH_FILE, PTH_LINE)

    def __enter__(self):
        self.inner.__enter__()
        return self

    def __exit__(self, *exc):
        return self.inner.__exit__(*exc)


cmdclass: dict[str, type] = {"build_py": BuildPyWithPth}
try:  # setuptools >= 64
    from setuptools.command.editable_wheel import editable_wheel
except ImportError:  # pragma: no cover
    editable_wheel = None
if editable_wheel is not None and hasattr(editable_wheel, "_select_strategy"):

    class EditableWheelWithPth(editable_wheel):
        def _select_strategy(self, *args, **kwargs):
            return _StrategyAddingPth(super()._select_strategy(*args, **kwargs))

    cmdclass["editable_wheel"] = EditableWheelWithPth

setup(cmdclass=cmdclass)
