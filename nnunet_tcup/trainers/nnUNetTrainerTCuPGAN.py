"""``nnUNetTrainerTCuPGAN``: TCuP-GAN (ConvLSTM U-Net generator + 3D PatchGAN discriminator) as an nnU-Net v2 trainer.

Run by the stock commands (``nnUNetv2_train D 3d_fullres F -tr nnUNetTrainerTCuPGAN``); everything nnU-Net does
(planning, preprocessing, data loading and augmentation, sliding-window inference, ensembling, post-processing) is
kept. What changes, following the paper (section 4.2):

* network: :class:`nnunet_tcup.network_architecture.TCuPGenerator` (logits, single output, no deep supervision);
  the discriminator :class:`~nnunet_tcup.network_architecture.PatchDiscriminator3D` lives beside it;
* formulation: on a plain label dataset (``nnunet_tcup convert --mode classes``: NETC, SNFH, ET) the paper's own:
  three sigmoid outputs, handed to nnU-Net as softmax logits linear in the sigmoid probabilities, so that its
  averaging (windows, mirrors, folds) and argmax give the paper's label rule on the averaged probabilities
  (:mod:`nnunet_tcup.trainers.class_head`; the loss reads a log-probability output of the same head); on a region dataset (WT, TC, ET) one sigmoid per region;
* losses: ``200 * W * BCE + BCE(D(x, pred), 1)`` for the generator, ``(real + fake) / 2`` for the discriminator (see
  :mod:`nnunet_tcup.trainers.losses`: the paper's class weights on classes, disjoint-class weights on regions);
* optimisation: Adam, lr 5e-4 (G) / 1e-4 (D), betas (0.5, 0.999) (pix2pix/PatchGAN convention; the paper gives none),
  no weight decay, both rates x0.95 every 5 epochs, gradient norm clipped at 12 as nnU-Net does;
* epochs: 30 paper epochs, an epoch being one pass over the fold's training cases
  (``ceil(n_train / batch_size)`` iterations, batch size from the plans: 2 for BraTS 3d_fullres, as in the paper);
  on BraTS-GLI 2023 (1251 cases) a 5-fold training fold has 1000 or 1001 cases -> 500 or 501 iterations x batch 2
  x 30 epochs ~ 30,000 patches = 30 passes over the fold (``-f all``: 626 x 2 x 30 = 37,560 ~ 30 x 1251; the
  paper's 90 % split: 30 x 1126). The rates thus decay at epochs 5, 10, 15, 20, 25, exactly as in the paper, and
  transfer to the small challenges (MEN/PED/SSA) keeps the paper's meaning of "30 epochs" too. One nnU-Net
  3d_fullres BraTS patch (about 128^3) covers most of a cropped brain, so a pass over cases is about a pass over the
  data; validation: one pass over the fold's validation cases per epoch, at most 50 iterations;
* input noise: N(0, 0.1^2) added on the GPU to voxels that are non-zero in any channel (brain; nnU-Net's masking
  sets the background to exactly 0 for BraTS) in every training step, on top of nnU-Net's full default augmentation
  (spatial, noise, blur, brightness, contrast, low resolution, gamma, mirroring), all kept unchanged. Note: nnU-Net
  z-score normalises each BraTS channel inside the brain mask, where the paper divides by the 99th percentile; sigma
  0.1 is therefore relative to one standard deviation of brain intensities here;
* torch.compile: off unless ``nnUNet_compile`` is set explicitly to true (the ConvLSTM scans the depth axis in a
  Python loop that compiles into one unrolled graph per patch depth: long compile times for little gain); when
  enabled, only the generator is compiled (the base class does it), on CUDA only;
* AMP (CUDA): autocast for both networks, logits + ``BCEWithLogits`` everywhere, one GradScaler per optimiser;
* DDP (``-num_gpus``): generator wrapped by the base class, the discriminator wrapped here; see
  :mod:`nnunet_tcup.trainers.gan_step` for how both stay synchronised;
* checkpoints: ``network_weights`` is the generator only (what the predictor and ``-pretrained_weights`` load);
  the discriminator, its optimiser, grad scaler, and both schedulers are stored under extra keys, so ``--c`` resumes
  the GAN exactly; a checkpoint is written every epoch (``save_every = 1``).

Logged per epoch (``progress.png``): supervised train/val loss, the generator's adversarial loss, the discriminator
loss, both learning rates.
"""

from __future__ import annotations

import math
import os
import tempfile
from typing import Any

import numpy as np
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.collate_outputs import collate_outputs
from nnunetv2.utilities.helpers import dummy_context
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import autocast, nn
from torch import distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from nnunet_tcup.io_utils import atomic_output
from nnunet_tcup.trainers.class_head import (
    build_tcup_network,
    class_output,
    plans_formulation,
    record_formulation,
    set_class_output,
)
from nnunet_tcup.trainers.gan_step import GANTargets, OptimiserSlot, gan_train_step, losses_to_host, unwrap
from nnunet_tcup.trainers.losses import (
    ClassWeightedBCELoss,
    RegionWeightedBCELoss,
    nonzero_gaussian_noise,
    num_mask_channels,
)
from nnunet_tcup.trainers.progress_logger import TCuPGANLocalLogger
from nnunet_tcup.trainers.schedulers import StepDecayLRScheduler

#: Extra checkpoint keys written next to nnU-Net's own (``network_weights`` stays generator-only).
GAN_CHECKPOINT_KEYS = (
    "discriminator_weights",
    "discriminator_optimizer_state",
    "discriminator_grad_scaler_state",
    "lr_scheduler_state",
    "discriminator_lr_scheduler_state",
)


class nnUNetTrainerTCuPGAN(nnUNetTrainer):
    """TCuP-GAN training with the paper's hyper-parameters (attributes set in ``__init__``, see module docstring)."""

    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),
    ):
        super().__init__(plans, configuration, fold, dataset_json, device)
        # paper, section 4.2
        self.initial_lr = 5e-4
        self.initial_lr_discriminator = 1e-4
        self.lr_decay_gamma = 0.95
        self.lr_decay_every_epochs = 5
        self.adam_betas: tuple[float, float] = (0.5, 0.999)
        self.weight_decay = 0.0
        self.bce_scale = 200.0
        self.adversarial_weight = 1.0
        self.input_noise_sigma = 0.1
        self.discriminator_features: tuple[int, ...] = (16, 32, 64, 128)
        self.discriminator_dropout = 0.2
        self.region_weight_rule = "disjoint"  # region datasets only; classes always use the paper's rule
        # nnU-Net side
        self.grad_clip_norm: float | None = 12.0
        self.num_epochs = 30
        self.epoch_is_pass_over_training_cases = True  # sets the iterations per epoch in on_train_start
        self.max_val_iterations_per_epoch = 50
        self.save_every = 1
        self.enable_deep_supervision = False

        # built in initialize() / configure_optimizers(), like nnU-Net's own network and optimizer attributes
        self.discriminator: nn.Module = None  # type: ignore[assignment]
        self.optimizer_discriminator: torch.optim.Optimizer = None  # type: ignore[assignment]
        self.lr_scheduler_discriminator: StepDecayLRScheduler = None  # type: ignore[assignment]
        self.grad_scaler_discriminator = torch.amp.GradScaler("cuda") if self.device.type == "cuda" else None
        self.logger.local_logger = TCuPGANLocalLogger()
        # saved with the plans into the model folder, read back by build_network_architecture at prediction time
        record_formulation(self.plans_manager.plans, self.formulation)

    @property
    def formulation(self) -> str:
        """``"regions"`` (sigmoid per nnU-Net region) or ``"classes"`` (the paper's sigmoid classes, label dataset)."""
        return "regions" if self.label_manager.has_regions else "classes"

    # ------------------------------------------------------------------ networks
    @staticmethod
    def build_network_architecture(
        plans_manager: PlansManager,
        configuration_manager: ConfigurationManager,
        num_input_channels: int,
        num_output_channels: int,
        enable_deep_supervision: bool = True,
    ) -> nn.Module:
        """The TCuP-GAN generator (paper widths); single logits output, so ``enable_deep_supervision`` is ignored.

        Regions: one logit per region. Classes (recorded in the plans by the trainer): the generator's
        ``num_output_channels - 1`` sigmoid logits wrapped into softmax logits (:mod:`.class_head`). Called by the
        predictor with ``enable_deep_supervision=False`` before a strict load of ``checkpoint['network_weights']``.
        """
        patch_size = configuration_manager.patch_size
        if len(patch_size) != 3:
            raise ValueError(
                f"TCuP-GAN needs a 3D configuration (e.g. 3d_fullres); configuration "
                f"'{configuration_manager.data_identifier}' has patch size {patch_size}"
            )
        return build_tcup_network(num_input_channels, num_output_channels, plans_formulation(plans_manager.plans))

    @staticmethod
    def build_discriminator(
        num_input_channels: int,
        num_mask_channels: int,
        features: tuple[int, ...] = (16, 32, 64, 128),
        dropout: float = 0.2,
    ) -> nn.Module:
        """3D PatchGAN on ``cat(image, mask)``: ``num_input_channels + num_mask_channels`` inputs, logits out."""
        from nnunet_tcup.network_architecture import PatchDiscriminator3D

        return PatchDiscriminator3D(num_input_channels + num_mask_channels, features=tuple(features), dropout=dropout)

    def set_deep_supervision_enabled(self, enabled: bool) -> None:
        """No-op: the generator has a single output (nnU-Net calls this around validation)."""

    def _do_i_compile(self) -> bool:
        """Compile only when ``nnUNet_compile`` is set explicitly (and the base class allows it: CUDA, not Windows)."""
        if "nnUNet_compile" not in os.environ:
            return False
        return super()._do_i_compile()

    def initialize(self) -> None:
        if self.label_manager.has_ignore_label:
            raise ValueError(
                f"nnUNetTrainerTCuPGAN does not support datasets with an ignore label "
                f"(dataset.json of {self.plans_manager.dataset_name} defines 'ignore')"
            )
        super().initialize()  # generator, its optimiser/scheduler, DDP wrapping, loss
        set_class_output(unwrap(self.network), "loss")  # classes: the loss reads log sigma (class_head)
        discriminator = self.build_discriminator(
            self.num_input_channels,
            num_mask_channels(self.label_manager.num_segmentation_heads, self.label_manager.has_regions),
            self.discriminator_features,
            self.discriminator_dropout,
        ).to(self.device)
        self.optimizer_discriminator, self.lr_scheduler_discriminator = self.configure_discriminator_optimizer(
            discriminator
        )
        if self.is_ddp:
            discriminator = DDP(discriminator, device_ids=[self.local_rank])
        self.discriminator = discriminator
        self.log_training_setup()
        self.logger.update_config(
            {
                "gan_hparas": {
                    "initial_lr_discriminator": self.initial_lr_discriminator,
                    "lr_decay_gamma": self.lr_decay_gamma,
                    "lr_decay_every_epochs": self.lr_decay_every_epochs,
                    "adam_betas": list(self.adam_betas),
                    "bce_scale": self.bce_scale,
                    "adversarial_weight": self.adversarial_weight,
                    "input_noise_sigma": self.input_noise_sigma,
                    "formulation": self.formulation,
                    "region_weight_rule": self.region_weight_rule,
                    "grad_clip_norm": self.grad_clip_norm,
                }
            }
        )

    def describe_training(self) -> list[str]:
        """Lines naming the networks (class, parameter count), the formulation and the loss weights."""
        generator, discriminator = unwrap(self.network), unwrap(self.discriminator)
        weights = (
            "paper W_c = 1 - n_c / sum n (one-hot classes)"
            if self.formulation == "classes"
            else f"{self.region_weight_rule} rule on the regions (see nnunet_tcup.trainers.losses)"
        )
        return [
            f"TCuP-GAN generator: {type(generator).__name__}, {count_parameters(generator):,} parameters",
            f"TCuP-GAN discriminator: {type(discriminator).__name__}, {count_parameters(discriminator):,} parameters",
            f"formulation: {self.formulation} ({', '.join(self.label_names())})",
            f"generator loss: {self.bce_scale:g} * W * BCE + {self.adversarial_weight:g} * BCE(D(x, pred), 1); "
            f"class weights: {weights}; loss module {type(self.loss).__name__}",
            f"discriminator loss: (BCE(D(x, gt), 1) + BCE(D(x, pred), 0)) / 2; gradient clip "
            f"{self.grad_clip_norm}; input noise sigma {self.input_noise_sigma:g}",
        ]

    def label_names(self) -> list[str]:
        """Names of the output channels trained with BCE (regions, or the classes without background)."""
        labels = self.dataset_json["labels"]
        names = [name for name, value in labels.items() if name != "background" and name != "ignore"]
        return names if names else [str(v) for v in labels.values()]

    def log_training_setup(self) -> None:
        """Write :meth:`describe_training` to the training log."""
        for line in self.describe_training():
            self.print_to_log_file(line)

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(
            self.network.parameters(), lr=self.initial_lr, betas=self.adam_betas, weight_decay=self.weight_decay
        )
        scheduler = StepDecayLRScheduler(optimizer, self.initial_lr, self.lr_decay_every_epochs, self.lr_decay_gamma)
        return optimizer, scheduler

    def configure_discriminator_optimizer(self, discriminator: nn.Module):
        optimizer = torch.optim.Adam(
            discriminator.parameters(),
            lr=self.initial_lr_discriminator,
            betas=self.adam_betas,
            weight_decay=self.weight_decay,
        )
        scheduler = StepDecayLRScheduler(
            optimizer, self.initial_lr_discriminator, self.lr_decay_every_epochs, self.lr_decay_gamma
        )
        return optimizer, scheduler

    def _build_loss(self) -> nn.Module:
        """Supervised term ``200 * W * BCE`` (also nnU-Net's validation loss); regions or classes."""
        if self.label_manager.has_regions:
            return RegionWeightedBCELoss(self.bce_scale, self.region_weight_rule)
        return ClassWeightedBCELoss(self.bce_scale)

    # ------------------------------------------------------------------ training loop hooks
    def _autocast(self):
        """Autocast on CUDA only (as nnU-Net: CPU autocast is slow, MPS unsupported)."""
        return autocast(self.device.type, enabled=True) if self.device.type == "cuda" else dummy_context()

    def on_train_start(self) -> None:
        if not self.was_initialized:
            self.initialize()
        if self.epoch_is_pass_over_training_cases:
            tr_keys, val_keys = self.do_split()
            global_batch = self.configuration_manager.batch_size
            self.num_iterations_per_epoch = max(1, math.ceil(len(tr_keys) / global_batch))
            self.num_val_iterations_per_epoch = max(
                1, min(self.max_val_iterations_per_epoch, math.ceil(len(val_keys) / global_batch))
            )
        self.print_to_log_file(
            f"TCuP-GAN: {self.num_epochs} epochs x {self.num_iterations_per_epoch} training "
            f"iterations ({self.num_val_iterations_per_epoch} validation iterations), batch size "
            f"{self.configuration_manager.batch_size}"
        )
        super().on_train_start()

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self.discriminator.train()
        self.lr_scheduler_discriminator.step(self.current_epoch)
        lr_d = self.optimizer_discriminator.param_groups[0]["lr"]
        self.print_to_log_file(f"Current discriminator learning rate: {np.round(lr_d, decimals=7)}")
        self.logger.log("lrs_discriminator", lr_d, self.current_epoch)

    def train_step(self, batch: dict) -> dict:
        data = batch["data"].to(self.device, non_blocking=True)
        target = batch["target"]
        if isinstance(target, list):  # deep supervision is off; nnU-Net would only give a list with it on
            target = target[0]
        target = target.to(self.device, non_blocking=True)
        data = nonzero_gaussian_noise(data, self.input_noise_sigma)
        return gan_train_step(
            self.network,
            self.discriminator,
            data,
            target,
            self.loss,
            GANTargets(self.label_manager.has_regions, self.label_manager.num_segmentation_heads),
            OptimiserSlot(self.optimizer, self.grad_scaler, self.grad_clip_norm),
            OptimiserSlot(self.optimizer_discriminator, self.grad_scaler_discriminator, self.grad_clip_norm),
            self._autocast,
            self.adversarial_weight,
        )

    def on_train_epoch_end(self, train_outputs: list[dict]) -> None:
        train_outputs = losses_to_host(train_outputs)  # one device -> host copy per epoch, not per step
        super().on_train_epoch_end(train_outputs)  # logs 'train_losses' from 'loss' (supervised term)
        outputs = collate_outputs(train_outputs)
        for key, log_key in (("adv_loss", "train_adv_losses"), ("disc_loss", "train_disc_losses")):
            if self.is_ddp:
                gathered: list[Any] = [None] * dist.get_world_size()
                dist.all_gather_object(gathered, outputs[key])
                value = float(np.mean(np.concatenate([np.ravel(g) for g in gathered])))
            else:
                value = float(np.mean(outputs[key]))
            self.logger.log(log_key, value, self.current_epoch)
        self.print_to_log_file(
            f"generator adversarial loss {np.round(self.logger.get_value('train_adv_losses', step=-1), 4)}, "
            f"discriminator loss {np.round(self.logger.get_value('train_disc_losses', step=-1), 4)}"
        )

    def perform_actual_validation(self, save_probabilities: bool = False) -> None:
        """nnU-Net's final validation (sliding windows, mirroring) with the classes head's ``"average"`` output, the
        one the predictor uses (:mod:`.class_head`); the training output is restored afterwards."""
        with class_output(unwrap(self.network), "average"):
            super().perform_actual_validation(save_probabilities)

    # ------------------------------------------------------------------ checkpoints
    def gan_checkpoint_entries(self) -> dict[str, object]:
        """Extra checkpoint entries: discriminator weights/optimiser/scaler and both schedulers' states."""
        return {
            "discriminator_weights": unwrap(self.discriminator).state_dict(),
            "discriminator_optimizer_state": self.optimizer_discriminator.state_dict(),
            "discriminator_grad_scaler_state": (
                self.grad_scaler_discriminator.state_dict() if self.grad_scaler_discriminator is not None else None
            ),
            "lr_scheduler_state": self.lr_scheduler.state_dict(),
            "discriminator_lr_scheduler_state": self.lr_scheduler_discriminator.state_dict(),
        }

    def save_checkpoint(self, filename: str) -> None:
        """nnU-Net's checkpoint plus :data:`GAN_CHECKPOINT_KEYS`, written atomically."""
        if self.local_rank != 0 or self.disable_checkpointing or self.discriminator is None:
            super().save_checkpoint(filename)
            return
        with atomic_output(filename) as tmp:
            super().save_checkpoint(str(tmp))
            checkpoint = torch.load(tmp, weights_only=False)
            checkpoint.update(self.gan_checkpoint_entries())
            torch.save(checkpoint, tmp)

    def load_checkpoint(self, filename_or_checkpoint: dict | str) -> None:
        """nnU-Net's loading (generator, its optimiser, logger, epoch) plus the GAN state when present."""
        if isinstance(filename_or_checkpoint, dict):
            # nnU-Net 2.8.1's load_checkpoint only reads file names: go through a temporary file
            with tempfile.TemporaryDirectory() as folder:
                path = os.path.join(folder, "checkpoint.pth")
                torch.save(filename_or_checkpoint, path)
                self.load_checkpoint(path)
            return
        super().load_checkpoint(filename_or_checkpoint)
        checkpoint = torch.load(filename_or_checkpoint, map_location=self.device, weights_only=False)
        self.load_gan_state(checkpoint)

    def load_gan_state(self, checkpoint: dict) -> None:
        """Restore the entries of :meth:`gan_checkpoint_entries`; warn and keep a fresh discriminator if absent."""
        if "discriminator_weights" not in checkpoint:
            self.print_to_log_file("WARNING: checkpoint has no discriminator state; the discriminator starts fresh")
            return
        unwrap(self.discriminator).load_state_dict(checkpoint["discriminator_weights"])
        self.optimizer_discriminator.load_state_dict(checkpoint["discriminator_optimizer_state"])
        if self.grad_scaler_discriminator is not None and checkpoint.get("discriminator_grad_scaler_state"):
            self.grad_scaler_discriminator.load_state_dict(checkpoint["discriminator_grad_scaler_state"])
        if checkpoint.get("lr_scheduler_state") is not None:
            self.lr_scheduler.load_state_dict(checkpoint["lr_scheduler_state"])
        if checkpoint.get("discriminator_lr_scheduler_state") is not None:
            self.lr_scheduler_discriminator.load_state_dict(checkpoint["discriminator_lr_scheduler_state"])


def count_parameters(module: nn.Module) -> int:
    """Number of parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())
