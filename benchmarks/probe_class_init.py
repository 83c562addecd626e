"""Why the paper's classes formulation learns no NETC / ET at small budgets: a cheap CPU probe of the output-bias
initialisation (the paper gives none) under the paper's loss and GAN step.

Trains a small TCuP-GAN generator (hidden widths 8, 16, 32) with the classes head, the paper's weighted BCE
(``ClassWeightedBCELoss``), the PatchGAN discriminator and the real GAN step on whole synthetic volumes
(``nnunet_tcup synth`` output, per-channel z-score inside the brain), for each initialisation of the head's bias:

* ``zero``: PyTorch's default (bias ~ U(-1/sqrt(fan_in), +), i.e. P ~ 0.5 for every class; the package's default);
* ``prior``: every class at ``logit(0.01)`` (``nnUNetTrainerTCuPGAN_priorBias``);
* ``prevalence``: each class at ``logit(n_c / N)`` of the training labels (the loss's constant-prediction optimum).

Every ``--eval-every`` steps it reports, on held-out cases, the voxel Dice of WT / TC / ET of the paper's rule
(argmax of ``[1 - sum sigma, sigma]``), the predicted voxel counts of NETC / ET, and the mean sigma of each class on
its own voxels and on background. Usage::

    python benchmarks/probe_class_init.py DATA_DIR --train 7 --steps 150 --inits zero prior prevalence --out out.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from nnunet_tcup.network_architecture import PatchDiscriminator3D, TCuPGenerator
from nnunet_tcup.trainers.class_head import SigmoidClassesNetwork
from nnunet_tcup.trainers.gan_step import GANTargets, OptimiserSlot, gan_train_step
from nnunet_tcup.trainers.losses import ClassWeightedBCELoss, nonzero_gaussian_noise, paper_class_weights

REGIONS = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}


def load_cases(folder: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(image (4, z, y, x) float32, labels (z, y, x) int64)`` of every case folder, z-scored inside the brain."""
    import nibabel as nib

    cases = []
    for case in sorted(p for p in folder.iterdir() if p.is_dir()):
        channels = [
            np.asarray(nib.load(case / f"{case.name}-{m}.nii.gz").dataobj, np.float32).T
            for m in ("t1n", "t1c", "t2w", "t2f")
        ]
        image = np.stack(channels)
        brain = (image != 0).any(0)
        for c in range(4):
            values = image[c][brain]
            image[c] = np.where(brain, (image[c] - values.mean()) / max(values.std(), 1e-6), 0.0)
        labels = np.asarray(nib.load(case / f"{case.name}-seg.nii.gz").dataobj).T.astype(np.int64)
        cases.append((image, labels))
    return cases


def init_bias(network: SigmoidClassesNetwork, rule: str, labels: list[np.ndarray]) -> list[float]:
    bias = network.head.bias
    assert isinstance(bias, torch.Tensor)
    with torch.no_grad():
        if rule == "prior":
            bias.fill_(math.log(0.01 / 0.99))
        elif rule == "prevalence":
            total = sum(lab.size for lab in labels)
            for k in range(bias.numel()):
                p = max(sum(int((lab == k + 1).sum()) for lab in labels) / total, 1e-4)
                bias[k] = math.log(p / (1 - p))
    return [round(float(b), 3) for b in bias.detach()]


def evaluate(network: SigmoidClassesNetwork, cases: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, object]:
    network.eval()
    tp = dict.fromkeys(REGIONS, 0)
    size = dict.fromkeys(REGIONS, 0)
    counts = np.zeros(4, np.int64)
    on_own = np.zeros(3)
    on_bg = np.zeros(3)
    n_own = np.zeros(3)
    n_bg = 0
    with torch.no_grad():
        for image, labels in cases:
            z = network(torch.from_numpy(image)[None])[0]
            sigma = torch.exp(z[1:]).numpy()
            predicted = z.argmax(0).numpy()
            counts += np.bincount(predicted.ravel(), minlength=4)
            for name, values in REGIONS.items():
                p, t = np.isin(predicted, values), np.isin(labels, values)
                tp[name] += int((p & t).sum())
                size[name] += int(p.sum() + t.sum())
            for k in range(3):
                own = labels == k + 1
                on_own[k] += sigma[k][own].sum()
                n_own[k] += own.sum()
                on_bg[k] += sigma[k][labels == 0].sum()
            n_bg += int((labels == 0).sum())
    network.train()
    return {
        "dice": {n: round(2 * tp[n] / size[n], 3) if size[n] else 1.0 for n in REGIONS},
        "predicted_voxels_netc_snfh_et": [int(c) for c in counts[1:]],
        "mean_sigma_on_own_class": [round(float(v), 3) for v in on_own / np.maximum(n_own, 1)],
        "mean_sigma_on_background": [round(float(v), 4) for v in on_bg / max(n_bg, 1)],
    }


def run(cases, held_out, rule: str, steps: int, eval_every: int, seed: int, lr: float) -> dict[str, object]:
    torch.manual_seed(seed)
    network = SigmoidClassesNetwork(TCuPGenerator(4, 3, hidden_channels=(8, 16, 32)), output="loss")
    bias = init_bias(network, rule, [lab for _, lab in cases])
    discriminator = PatchDiscriminator3D(4 + 3, features=(8, 16, 32), dropout=0.2)
    g_slot = OptimiserSlot(torch.optim.Adam(network.parameters(), lr, betas=(0.5, 0.999)), None, 12.0)
    d_slot = OptimiserSlot(torch.optim.Adam(discriminator.parameters(), lr / 5, betas=(0.5, 0.999)), None, 12.0)
    loss = ClassWeightedBCELoss()
    rng = np.random.default_rng(seed)
    history = []
    start = time.process_time()
    for step in range(1, steps + 1):
        batch = rng.choice(len(cases), 2, replace=False)
        data = torch.from_numpy(np.stack([cases[i][0] for i in batch]))
        target = torch.from_numpy(np.stack([cases[i][1] for i in batch]))[:, None]
        if rng.random() < 0.5:  # a little augmentation: left-right mirror
            data, target = data.flip(-1), target.flip(-1)
        out = gan_train_step(
            network,
            discriminator,
            nonzero_gaussian_noise(data, 0.1),
            target,
            loss,
            GANTargets(False, 4),
            g_slot,
            d_slot,
            contextlib.nullcontext,
        )
        if step % eval_every == 0 or step == steps:
            record = {"step": step, "loss": round(float(out["loss"]), 3), **evaluate(network, held_out)}
            history.append(record)
            print(rule, json.dumps(record), flush=True)
    return {"init": rule, "bias": bias, "cpu_s": round(time.process_time() - start, 1), "history": history}


def weight_report(cases) -> dict[str, object]:
    """The paper's W_c on whole-case pairs, and each class's positive share of its own BCE terms."""
    labels = torch.from_numpy(np.stack([lab for _, lab in cases]))[:, None]
    one_hot = torch.cat([(labels == k).float() for k in (1, 2, 3)], 1)
    weights = paper_class_weights(one_hot)
    share = one_hot.mean(dim=(0, 2, 3, 4))
    return {"W_c": [round(float(w), 3) for w in weights], "positive_share": [round(float(s), 5) for s in share]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--train", type=int, default=7)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--inits", nargs="+", default=["zero", "prior", "prevalence"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cases = load_cases(args.data)
    train, held_out = cases[: args.train], cases[args.train :]
    results = {"weights": weight_report(train), "runs": []}
    print(json.dumps(results["weights"]), flush=True)
    for rule in args.inits:
        results["runs"].append(run(train, held_out, rule, args.steps, args.eval_every, args.seed, args.lr))
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
