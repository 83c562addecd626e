"""Mutation check of the TCuP-GAN tests: apply each one-line break to a fresh copy of the package and the tests (in
a temporary folder, never in the checkout), run the fast tests meant to catch it, print CAUGHT / NOT CAUGHT.

Usage (from the repository root): ``python tests/mutation_check_trainer.py [NAME_PART ...]``. A pattern that no longer
matches the code fails loudly (update the mutation together with the code it breaks).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SRC = Path(__file__).resolve().parents[1]
MUTATIONS = [
    (
        "zero h skip",
        "nnunet_tcup/network_architecture/generator.py",
        "out = torch.cat([out, skips[levels - 1 - j]], dim=2)",
        "out = torch.cat([out, torch.zeros_like(skips[levels - 1 - j])], dim=2)",
        ["tests/test_networks.py"],
    ),
    (
        "zero c skip",
        "nnunet_tcup/network_architecture/generator.py",
        "cells.append(c_skip)",
        "cells.append(torch.zeros_like(c_skip))",
        ["tests/test_networks.py"],
    ),
    (
        "reverse slice order of the recurrence",
        "nnunet_tcup/network_architecture/convlstm.py",
        "        return convlstm_fused(x, weight, bias, padding, c0, self.steps_per_chunk, self.buffer_pool)",
        "        h, c = convlstm_fused(x.flip(0), weight, bias, padding, c0, self.steps_per_chunk, self.buffer_pool)\n"
        "        return h.flip(0), c",
        ["tests/test_networks.py"],
    ),
    (
        "ConvLSTM buffers released while their graph is alive",
        "nnunet_tcup/network_architecture/_fused_recurrence.py",
        "buf = pool.lease(key, ctx.lease)",
        "buf = pool.lease(key, Lease())",
        ["tests/test_convlstm_fused.py"],
    ),
    (
        "ConvLSTM output is a view of a reused buffer",
        "nnunet_tcup/network_architecture/_fused_recurrence.py",
        "return buf.h_seq.clone(), c_t[-1].clone(memory_format=torch.contiguous_format)",
        "return buf.h_seq, c_t[-1].clone(memory_format=torch.contiguous_format)",
        ["tests/test_convlstm_fused.py"],
    ),
    (
        "ConvLSTM backward: gradients copied into the coefficients' own slot (slot t, not t + 1)",
        "nnunet_tcup/network_architecture/_recurrence_buffers.py",
        "self.grads = raw.permute(0, 1, 4, 2, 3)[1:]",
        "self.grads = raw.permute(0, 1, 4, 2, 3)[:-1]",
        ["tests/test_convlstm_fused.py"],
    ),
    (
        "ConvLSTM backward: the step's gradient not copied for the convolutions",
        "nnunet_tcup/network_architecture/_fused_recurrence.py",
        "                grad_blocks_t[t].copy_(coef_t[t])",
        "                pass",
        ["tests/test_convlstm_fused.py"],
    ),
    (
        "swap the two GradScalers",
        "nnunet_tcup/trainers/nnUNetTrainerTCuPGAN.py",
        "OptimiserSlot(self.optimizer, self.grad_scaler, self.grad_clip_norm),\n            OptimiserSlot(self.optimizer_discriminator, self.grad_scaler_discriminator, self.grad_clip_norm)",
        "OptimiserSlot(self.optimizer, self.grad_scaler_discriminator, self.grad_clip_norm),\n            OptimiserSlot(self.optimizer_discriminator, self.grad_scaler, self.grad_clip_norm)",
        ["tests/test_trainer_unit.py"],
    ),
    (
        "drop the adversarial term",
        "nnunet_tcup/trainers/gan_step.py",
        "generator_total = supervised + adversarial_weight * adversarial",
        "generator_total = supervised",
        ["tests/test_trainer_step.py"],
    ),
    (
        "drop the class weights (every rule)",
        "nnunet_tcup/trainers/losses.py",
        "return (elementwise * class_weights.view(shape)).mean()",
        "return elementwise.mean()",
        ["tests/test_trainer_losses.py"],
    ),
    (
        "drop the class weights (classes loss only)",
        "nnunet_tcup/trainers/losses.py",
        "return self.gamma * weighted_mean(bce, paper_class_weights(masks))",
        "return self.gamma * bce.mean()",
        ["tests/test_trainer_losses.py"],
    ),
    (
        "epoch arithmetic: floor instead of ceil",
        "nnunet_tcup/trainers/nnUNetTrainerTCuPGAN.py",
        "max(1, math.ceil(len(tr_keys) / global_batch))",
        "max(1, len(tr_keys) // global_batch)",
        ["tests/test_trainer_unit.py"],
    ),
    (
        "epoch arithmetic: one iteration too many",
        "nnunet_tcup/trainers/nnUNetTrainerTCuPGAN.py",
        "max(1, math.ceil(len(tr_keys) / global_batch))",
        "max(1, math.ceil(len(tr_keys) / global_batch) + 1)",
        ["tests/test_trainer_unit.py"],
    ),
]


def main(only: list[str]) -> int:
    missed = 0
    for name, path, old, new, tests in MUTATIONS:
        if only and not any(o in name for o in only):
            continue
        with tempfile.TemporaryDirectory(prefix="tcup_mutation_") as folder:
            missed += not check(Path(folder), name, path, old, new, tests)
    return 1 if missed else 0


def check(work: Path, name: str, path: str, old: str, new: str, tests: list[str]) -> bool:
    """Apply one mutation in ``work`` and run ``tests``; True when at least one test fails."""
    for item in ("nnunet_tcup", "tests", "pyproject.toml"):
        if (SRC / item).is_dir():
            shutil.copytree(SRC / item, work / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(SRC / item, work / item)
    target = work / path
    text = target.read_text()
    if text.count(old) != 1:
        raise SystemExit(f"{name}: the pattern occurs {text.count(old)} times in {path}; update the mutation")
    target.write_text(text.replace(old, new))
    env = {**os.environ, "PYTHONPATH": str(work), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "not slow", "-p", "no:cacheprovider", *tests],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    failed = [
        line.split(" - ")[0].replace("FAILED ", "") for line in proc.stdout.splitlines() if line.startswith("FAILED")
    ]
    print(f"{name}: {'CAUGHT by ' + ', '.join(failed) if proc.returncode else 'NOT CAUGHT'}", flush=True)
    return proc.returncode != 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
