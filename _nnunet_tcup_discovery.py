"""Run at interpreter start by ``nnunet_tcup_trainers.pth``: make nnU-Net find the TCuP-GAN trainers.

nnU-Net 2.8 looks trainers up by class name in its own trainer folder and then in each folder listed in the
environment variable ``nnUNet_extTrainer`` (``os.pathsep``-separated). This appends the folder of our thin
re-export shim (``nnunet_tcup/trainers/nnunet_ext``) to that variable, keeping any entries the user already has.
It imports nothing heavy and never raises: a half-installed package must not break Python start-up.
"""


def _register() -> None:
    import importlib.util
    import os

    spec = importlib.util.find_spec("nnunet_tcup")
    if spec is None or not spec.submodule_search_locations:
        return
    package_dir = list(spec.submodule_search_locations)[0]
    shim_dir = os.path.join(package_dir, "trainers", "nnunet_ext")
    if not os.path.isdir(shim_dir):
        return
    current = os.environ.get("nnUNet_extTrainer", "")
    entries = [e for e in current.split(os.pathsep) if e]
    if any(os.path.normpath(e) == os.path.normpath(shim_dir) for e in entries):
        return
    entries.append(shim_dir)
    os.environ["nnUNet_extTrainer"] = os.pathsep.join(entries)


try:
    _register()
except Exception:  # never break interpreter start-up
    pass
