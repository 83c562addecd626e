"""Installs the ``nnunet_tcup`` package, its console command, and a ``.pth`` hook that lets the stock
``nnUNetv2_*`` commands find ``nnUNetTrainerTCuPGAN`` with no manual set-up (see ``_nnunet_tcup_discovery.py``)."""
import os

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

PTH_FILE = "nnunet_tcup_trainers.pth"
PTH_LINE = "import _nnunet_tcup_discovery\n"


class BuildPyWithPth(build_py):
    """build_py that also places the discovery ``.pth`` at the wheel root (site-packages once installed)."""

    def run(self):
        super().run()
        target = os.path.join(self.build_lib, PTH_FILE)
        os.makedirs(self.build_lib, exist_ok=True)
        with open(target, "w") as f:
            f.write(PTH_LINE)

    def get_outputs(self, include_bytecode=True):
        return list(super().get_outputs(include_bytecode)) + [os.path.join(self.build_lib, PTH_FILE)]


try:  # setuptools >= 64: PEP 660 editable installs ("pip install -e .") build their own wheel
    from setuptools.command.editable_wheel import editable_wheel
except ImportError:  # pragma: no cover
    editable_wheel = None


class _StrategyAddingPth:
    """Wraps setuptools' editable strategy so the editable wheel also carries the discovery ``.pth``."""

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


cmdclass = {"build_py": BuildPyWithPth}
if editable_wheel is not None and hasattr(editable_wheel, "_select_strategy"):

    class EditableWheelWithPth(editable_wheel):
        def _select_strategy(self, *args, **kwargs):
            return _StrategyAddingPth(super()._select_strategy(*args, **kwargs))

    cmdclass["editable_wheel"] = EditableWheelWithPth

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "README.md"), encoding="utf-8") as f:
    long_description = f.read()

setup(
    name="nnunet_tcup",
    version="0.1.0",
    description="TCuP-GAN (ConvLSTM U-Net + 3D PatchGAN) for BraTS 2023 brain-tumour segmentation as an nnU-Net v2 plugin",
    long_description=long_description,
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["nnunet_tcup", "nnunet_tcup.*"]),
    py_modules=["_nnunet_tcup_discovery"],
    package_data={"nnunet_tcup": ["trainers/nnunet_ext/*.py"]},
    install_requires=[
        "nnunetv2>=2.8,<2.9",
        "torch",
        "batchgenerators",
        "SimpleITK",
        "nibabel",
        "connected-components-3d",
        "numpy",
        "scipy",
        "surface-distance",
        "tqdm",
        "matplotlib",
        "pandas",
        "nilearn",
    ],
    extras_require={"test": ["pytest"]},
    entry_points={"console_scripts": ["nnunet_tcup=nnunet_tcup.cli:main"]},
    cmdclass=cmdclass,
)
