"""nnU-Net's local logger extended with the GAN's per-epoch values, and a progress.png that draws them.

nnU-Net's ``LocalLogger`` asserts on unknown keys and infers the epoch from the shortest list, so every key here gets
exactly one value per epoch. Keys added:

* ``train_adv_losses``: generator's adversarial term ``BCE(D(x, pred), 1)`` (mean over the epoch's iterations);
* ``train_disc_losses``: discriminator loss ``(real + fake) / 2``;
* ``lrs_discriminator``: discriminator learning rate.

``train_losses`` / ``val_losses`` keep nnU-Net's meaning of "the loss on training / validation patches", here the
supervised term ``200 * W * BCE`` on both, so the two curves are comparable.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from batchgenerators.utilities.file_and_folder_operations import join  # noqa: E402
from nnunetv2.training.logging.nnunet_logger import LocalLogger  # noqa: E402

GAN_LOG_KEYS = ("train_adv_losses", "train_disc_losses", "lrs_discriminator")


class TCuPGANLocalLogger(LocalLogger):
    """``LocalLogger`` with :data:`GAN_LOG_KEYS` and a four-panel ``progress.png``."""

    def __init__(self, verbose: bool = False):
        super().__init__(verbose)
        ensure_gan_keys(self.my_fantastic_logging)

    def load_checkpoint(self, checkpoint: dict) -> None:
        super().load_checkpoint(checkpoint)
        ensure_gan_keys(self.my_fantastic_logging)

    def plot_progress_png(self, output_folder: str) -> None:
        log = self.my_fantastic_logging
        epoch = min(len(v) for v in log.values()) - 1
        if epoch < 0:
            return
        x = list(range(epoch + 1))
        fig, axes = plt.subplots(4, 1, figsize=(16, 28))

        ax = axes[0]
        ax.plot(x, log["train_losses"][: epoch + 1], color="b", label="loss_tr (200*W*BCE)", linewidth=3)
        ax.plot(x, log["val_losses"][: epoch + 1], color="r", label="loss_val (200*W*BCE)", linewidth=3)
        ax.set_xlabel("epoch")
        ax.set_ylabel("supervised loss")
        ax2 = ax.twinx()
        ax2.plot(x, log["mean_fg_dice"][: epoch + 1], color="g", ls="dotted", label="pseudo dice", linewidth=2)
        ax2.plot(x, log["ema_fg_dice"][: epoch + 1], color="g", label="pseudo dice (mov. avg.)", linewidth=3)
        ax2.set_ylabel("pseudo dice")
        ax.legend(loc=(0, 1))
        ax2.legend(loc=(0.4, 1))

        ax = axes[1]
        ax.plot(x, log["train_adv_losses"][: epoch + 1], color="m", label="generator adversarial BCE", linewidth=3)
        ax.plot(x, log["train_disc_losses"][: epoch + 1], color="k", label="discriminator (real+fake)/2", linewidth=3)
        ax.axhline(math.log(2.0), color="grey", ls="dashed", label="ln 2 (D cannot tell)")
        ax.set_xlabel("epoch")
        ax.set_ylabel("GAN losses")
        ax.legend(loc=(0, 1))

        ax = axes[2]
        durations = [
            e - s for e, s in zip(log["epoch_end_timestamps"][: epoch + 1], log["epoch_start_timestamps"][: epoch + 1])
        ]
        ax.plot(x, durations, color="b", label="epoch duration", linewidth=3)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("epoch")
        ax.set_ylabel("time [s]")
        ax.legend(loc=(0, 1))

        ax = axes[3]
        ax.plot(x, log["lrs"][: epoch + 1], color="b", label="generator learning rate", linewidth=3)
        ax.plot(x, log["lrs_discriminator"][: epoch + 1], color="k", label="discriminator learning rate", linewidth=3)
        ax.set_xlabel("epoch")
        ax.set_ylabel("learning rate")
        ax.legend(loc=(0, 1))

        fig.tight_layout()
        fig.savefig(join(output_folder, "progress.png"))
        plt.close(fig)


def ensure_gan_keys(log: dict[str, list]) -> None:
    """Add missing :data:`GAN_LOG_KEYS` (e.g. a checkpoint written without them), NaN-filled to the epochs logged."""
    n_epochs = len(log.get("epoch_end_timestamps", []))
    for key in GAN_LOG_KEYS:
        if key not in log:
            log[key] = [float("nan")] * n_epochs
