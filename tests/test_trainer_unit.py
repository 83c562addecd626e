"""In-process tests of ``nnUNetTrainerTCuPGAN``: configuration, one GAN step on a hand-made batch (region and label
datasets, plain and CPU-AMP paths), validation step, checkpoint round trip, logger and progress plot.

The trainer is built from a small hand-written plans dict (no preprocessing needed); the dataloaders are not used.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from nnunet_tcup.network_architecture import PatchDiscriminator3D, TCuPGenerator
from nnunet_tcup.trainers.class_head import SigmoidClassesNetwork
from nnunet_tcup.trainers.gan_step import unwrap
from nnunet_tcup.trainers.losses import ClassWeightedBCELoss, RegionWeightedBCELoss
from nnunet_tcup.trainers.nnUNetTrainerTCuPGAN import GAN_CHECKPOINT_KEYS, nnUNetTrainerTCuPGAN
from nnunet_tcup.trainers.progress_logger import GAN_LOG_KEYS
from nnunet_tcup.trainers.variants.training_length import (
    nnUNetTrainerTCuPGAN_5epochs,
    nnUNetTrainerTCuPGAN_finetune,
    nnUNetTrainerTCuPGAN_tiny,
)

PATCH = [8, 16, 16]
DATASET = "Dataset987_UnitTCuP"


def _plans() -> dict:
    intensity = {
        "max": 3.0,
        "mean": 0.0,
        "median": 0.0,
        "min": -3.0,
        "percentile_00_5": -2.5,
        "percentile_99_5": 2.5,
        "std": 1.0,
    }
    return {
        "dataset_name": DATASET,
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [1.0, 1.0, 1.0],
        "original_median_shape_after_transp": [8, 16, 16],
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {str(i): intensity for i in range(4)},
        "configurations": {
            "3d_fullres": {
                "data_identifier": "nnUNetPlans_3d_fullres",
                "preprocessor_name": "DefaultPreprocessor",
                "batch_size": 2,
                "patch_size": PATCH,
                "median_image_size_in_voxels": [8, 16, 16],
                "spacing": [1.0, 1.0, 1.0],
                "normalization_schemes": ["ZScoreNormalization"] * 4,
                "use_mask_for_norm": [True] * 4,
                "resampling_fn_data": "resample_data_or_seg_to_shape",
                "resampling_fn_seg": "resample_data_or_seg_to_shape",
                "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
                "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
                "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
                "resampling_fn_probabilities_kwargs": {
                    "is_seg": False,
                    "order": 1,
                    "order_z": 0,
                    "force_separate_z": None,
                },
                "architecture": {
                    "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                    "arch_kwargs": {
                        "n_stages": 2,
                        "features_per_stage": [8, 16],
                        "conv_op": "torch.nn.modules.conv.Conv3d",
                        "kernel_sizes": [[3, 3, 3], [3, 3, 3]],
                        "strides": [[1, 1, 1], [2, 2, 2]],
                        "n_conv_per_stage": [1, 1],
                        "n_conv_per_stage_decoder": [1],
                        "conv_bias": True,
                        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                        "norm_op_kwargs": {"eps": 1e-05, "affine": True},
                        "dropout_op": None,
                        "dropout_op_kwargs": None,
                        "nonlin": "torch.nn.LeakyReLU",
                        "nonlin_kwargs": {"inplace": True},
                    },
                    "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
                },
                "batch_dice": False,
            }
        },
        "continue_training": False,
    }


REGIONS_JSON = {
    "channel_names": {"0": "t1n", "1": "t1c", "2": "t2w", "3": "t2f"},
    "labels": {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [1, 3], "enhancing tumor": [3]},
    "regions_class_order": [2, 1, 3],
    "numTraining": 2,
    "file_ending": ".nii.gz",
}
LABELS_JSON = {
    "channel_names": {"0": "t1n", "1": "t1c", "2": "t2w", "3": "t2f"},
    "labels": {"background": 0, "NETC": 1, "SNFH": 2, "ET": 3},
    "numTraining": 2,
    "file_ending": ".nii.gz",
}


@pytest.fixture
def nnunet_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """nnU-Net folders for in-process trainers (one dummy preprocessed file so the dataset class can be inferred)."""
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        folder = tmp_path / key
        folder.mkdir()
        monkeypatch.setenv(key, str(folder))
    data_folder = tmp_path / "nnUNet_preprocessed" / DATASET / "nnUNetPlans_3d_fullres"
    data_folder.mkdir(parents=True)
    (data_folder / "case_000.b2nd").write_bytes(b"")
    monkeypatch.delenv("nnUNet_compile", raising=False)
    return tmp_path


def _trainer(cls=nnUNetTrainerTCuPGAN_tiny, dataset_json: dict = REGIONS_JSON, fold: int = 0):
    torch.manual_seed(0)
    trainer = cls(
        plans=_plans(),
        configuration="3d_fullres",
        fold=fold,
        dataset_json=copy.deepcopy(dataset_json),
        device=torch.device("cpu"),
    )
    trainer.initialize()
    return trainer


def _batch(regions: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    data = torch.randn((2, 4, *PATCH), generator=g)
    data[:, :, :, :2] = 0  # background rows: exactly 0 in all channels
    labels = torch.zeros((2, 1, *PATCH), dtype=torch.int16)
    labels[:, :, 2:6, 4:12, 4:12] = 2
    labels[:, :, 3:5, 6:10, 6:10] = 1
    labels[:, :, 3:5, 6:8, 6:8] = 3
    if not regions:
        return {"data": data, "target": labels}
    regions_t = torch.cat([(labels > 0), (labels == 1) | (labels == 3), labels == 3], dim=1).to(torch.int16)
    return {"data": data, "target": regions_t}


def _state_copy(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_paper_hyperparameters_and_variants(nnunet_dirs: Path) -> None:
    trainer = _trainer(nnUNetTrainerTCuPGAN)
    assert (trainer.initial_lr, trainer.initial_lr_discriminator) == (5e-4, 1e-4)
    assert (trainer.lr_decay_gamma, trainer.lr_decay_every_epochs, trainer.num_epochs) == (0.95, 5, 30)
    assert trainer.enable_deep_supervision is False and trainer.epoch_is_pass_over_training_cases
    assert trainer.input_noise_sigma == 0.1 and trainer.bce_scale == 200.0 and trainer.save_every == 1
    assert isinstance(trainer.network, TCuPGenerator) and isinstance(trainer.discriminator, PatchDiscriminator3D)
    assert trainer.discriminator.input_channels == 4 + 3  # image + three region masks
    assert isinstance(trainer.optimizer, torch.optim.Adam) and isinstance(
        trainer.optimizer_discriminator, torch.optim.Adam
    )
    assert isinstance(trainer.loss, RegionWeightedBCELoss)
    # x0.95 every 5 epochs: epochs 0-4 at 5e-4, 5-9 at 4.75e-4, ..., epoch 29 at 5e-4 * 0.95**5
    rates = [trainer.lr_scheduler.lr_at(e) for e in range(30)]
    assert rates[4] == 5e-4 and rates[5] == pytest.approx(4.75e-4) and rates[29] == pytest.approx(5e-4 * 0.95**5)
    assert trainer.lr_scheduler_discriminator.lr_at(12) == pytest.approx(1e-4 * 0.95**2)
    # the base class records init kwargs by signature: no extra __init__ parameters
    assert set(trainer.my_init_kwargs) == {"plans", "configuration", "fold", "dataset_json", "device"}

    finetune = _trainer(nnUNetTrainerTCuPGAN_finetune, fold=1)
    assert [finetune.lr_scheduler.lr_at(e) for e in (0, 5, 29)] == [1e-4] * 3
    assert [finetune.lr_scheduler_discriminator.lr_at(e) for e in (0, 5, 29)] == [1e-4] * 3
    tiny = _trainer(nnUNetTrainerTCuPGAN_tiny, fold=2)
    assert (tiny.num_epochs, tiny.num_iterations_per_epoch, tiny.num_val_iterations_per_epoch) == (2, 4, 2)
    five = _trainer(nnUNetTrainerTCuPGAN_5epochs, fold=3)
    assert (five.num_epochs, five.num_iterations_per_epoch, five.lr_decay_every_epochs) == (5, 25, 1)


def test_compile_only_when_requested(nnunet_dirs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = _trainer()
    assert trainer._do_i_compile() is False  # unset: off (the stock trainer would compile on CUDA)
    monkeypatch.setenv("nnUNet_compile", "true")
    assert trainer._do_i_compile() is False  # the base class never compiles on CPU
    monkeypatch.setattr(nnUNetTrainerTCuPGAN.__mro__[1], "_do_i_compile", lambda self: True)
    assert trainer._do_i_compile() is True  # explicit request honoured where the base class allows it
    monkeypatch.delenv("nnUNet_compile")
    assert trainer._do_i_compile() is False


def test_build_network_architecture_is_static_and_generator_only(nnunet_dirs: Path) -> None:
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = PlansManager(_plans())
    network = nnUNetTrainerTCuPGAN.build_network_architecture(
        plans, plans.get_configuration("3d_fullres"), 4, 3, enable_deep_supervision=False
    )
    assert isinstance(network, TCuPGenerator)
    assert network(torch.zeros(1, 4, *PATCH)).shape == (1, 3, *PATCH)
    trainer = _trainer()
    trainer.set_deep_supervision_enabled(True)  # no-op, no AttributeError (no decoder.deep_supervision)
    network.load_state_dict(unwrap(trainer.network).state_dict(), strict=True)


def test_classes_formulation_reaches_the_predictor_through_the_saved_plans(
    nnunet_dirs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A label dataset: the trainer records "classes" in its plans; the predictor, given those plans and the number
    of labels (4 with background), builds the same wrapped network and loads the weights strictly."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    trainer = _trainer(dataset_json=LABELS_JSON)
    assert trainer.formulation == "classes" and isinstance(unwrap(trainer.network), SigmoidClassesNetwork)
    saved_plans = copy.deepcopy(trainer.plans_manager.plans)  # what nnU-Net writes to the model folder
    assert saved_plans["tcup_gan"]["formulation"] == "classes"
    manager = PlansManager(saved_plans)
    network = nnUNetTrainerTCuPGAN.build_network_architecture(
        manager, manager.get_configuration("3d_fullres"), 4, 4, enable_deep_supervision=False
    )
    network.load_state_dict(unwrap(trainer.network).state_dict(), strict=True)
    probabilities = torch.softmax(network(torch.randn(1, 4, *PATCH)), dim=1)
    assert probabilities.shape == (1, 4, *PATCH)
    # the trainer's loss reads the log-probability output; the predictor (and the trainer's final validation) the
    # output linear in sigma that nnU-Net averages
    assert unwrap(trainer.network).output == "loss" and network.output == "average"
    seen = []
    monkeypatch.setattr(
        nnUNetTrainerTCuPGAN.__mro__[1],
        "perform_actual_validation",
        lambda self, save_probabilities=False: seen.append(unwrap(self.network).output),
    )
    trainer.perform_actual_validation()
    assert seen == ["average"] and unwrap(trainer.network).output == "loss"
    torch.testing.assert_close(probabilities.sum(1), torch.ones(1, *PATCH))
    assert _trainer().plans_manager.plans["tcup_gan"]["formulation"] == "regions"


def test_training_log_names_networks_formulation_and_loss_weights(nnunet_dirs: Path) -> None:
    for dataset_json, formulation, weights in (
        (REGIONS_JSON, "regions", "disjoint"),
        (LABELS_JSON, "classes", "paper"),
    ):
        trainer = _trainer(dataset_json=dataset_json)
        log = Path(trainer.log_file).read_text()
        assert "TCuP-GAN generator: " in log and "2,363,651 parameters" in log
        assert (
            f"discriminator: PatchDiscriminator3D, {sum(p.numel() for p in trainer.discriminator.parameters()):,}"
            in log
        )
        assert f"formulation: {formulation}" in log and weights in log and "200 * W * BCE" in log


@pytest.mark.parametrize(
    "n_train, n_val, iterations, val_iterations",
    [(7, 3, 4, 2), (8, 2, 4, 1), (1000, 251, 500, 50), (1001, 250, 501, 50)],
)
def test_epoch_is_one_pass_over_the_training_cases(
    nnunet_dirs: Path, monkeypatch: pytest.MonkeyPatch, n_train: int, n_val: int, iterations: int, val_iterations: int
) -> None:
    """The real trainer's epoch arithmetic (batch size 2 from the plans): ceil(n_train / 2) iterations."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    monkeypatch.setattr(nnUNetTrainer, "on_train_start", lambda self: None)  # no dataloaders
    trainer = _trainer(nnUNetTrainerTCuPGAN)
    trainer.do_split = lambda: ([f"tr{i}" for i in range(n_train)], [f"val{i}" for i in range(n_val)])
    trainer.on_train_start()
    assert (trainer.num_iterations_per_epoch, trainer.num_val_iterations_per_epoch) == (iterations, val_iterations)


@pytest.mark.parametrize("dataset_json", [REGIONS_JSON, LABELS_JSON], ids=["regions", "labels"])
def test_train_step_updates_both_networks(nnunet_dirs: Path, dataset_json: dict) -> None:
    trainer = _trainer(dataset_json=dataset_json)
    regions = dataset_json is REGIONS_JSON
    assert isinstance(trainer.loss, RegionWeightedBCELoss if regions else ClassWeightedBCELoss)
    assert trainer.discriminator.input_channels == 4 + 3
    g_before, d_before = _state_copy(trainer.network), _state_copy(trainer.discriminator)
    trainer.on_train_epoch_start()
    outputs = [trainer.train_step(_batch(regions, seed=i)) for i in range(2)]
    for out in outputs:
        assert set(out) == {"loss", "adv_loss", "disc_loss"} and all(math.isfinite(v) for v in out.values())
    assert any(not torch.equal(v, trainer.network.state_dict()[k]) for k, v in g_before.items())
    assert any(not torch.equal(v, trainer.discriminator.state_dict()[k]) for k, v in d_before.items())
    trainer.on_train_epoch_end(outputs)
    assert trainer.logger.get_value("train_adv_losses", step=0) == pytest.approx(
        np.mean([o["adv_loss"] for o in outputs])
    )
    with torch.no_grad():
        trainer.on_validation_epoch_start()
        val = trainer.validation_step(_batch(regions, seed=5))
    assert np.isfinite(val["loss"]) and val["tp_hard"].shape == (3,)


def test_train_step_amp_path_with_two_grad_scalers(nnunet_dirs: Path) -> None:
    """The CUDA AMP code path (autocast + one GradScaler per optimiser), exercised on CPU with bfloat16."""
    trainer = _trainer()
    trainer._autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    trainer.grad_scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    trainer.grad_scaler_discriminator = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    d_before = _state_copy(trainer.discriminator)
    trainer.on_train_epoch_start()
    out = trainer.train_step(_batch(True))
    assert all(math.isfinite(v) for v in out.values())
    assert trainer.grad_scaler.get_scale() > 0 and trainer.grad_scaler_discriminator.get_scale() > 0
    assert any(not torch.equal(v, trainer.discriminator.state_dict()[k]) for k, v in d_before.items())


def test_each_grad_scaler_serves_its_own_optimiser(nnunet_dirs: Path) -> None:
    """The generator's GradScaler unscales/steps only the generator's optimiser, and the discriminator's its own."""
    calls = []

    class RecordingScaler(torch.amp.GradScaler):
        def __init__(self, name: str):
            super().__init__("cpu", init_scale=2.0**4)
            self.name = name

        def step(self, optimizer, *args, **kwargs):
            calls.append((self.name, optimizer))
            return super().step(optimizer, *args, **kwargs)

    trainer = _trainer()
    trainer.grad_scaler, trainer.grad_scaler_discriminator = RecordingScaler("G"), RecordingScaler("D")
    trainer.on_train_epoch_start()
    trainer.train_step(_batch(True))
    assert calls == [("G", trainer.optimizer), ("D", trainer.optimizer_discriminator)]


def test_checkpoint_round_trip_restores_gan_state(nnunet_dirs: Path, tmp_path: Path) -> None:
    trainer = _trainer()
    trainer.num_epochs = 10  # so that on_epoch_end writes checkpoint_latest.pth after each epoch
    trainer.lr_decay_every_epochs = 1
    trainer.lr_scheduler.step_size = trainer.lr_scheduler_discriminator.step_size = 1
    for epoch in range(2):  # two epochs with the schedule stepping every epoch
        trainer.on_epoch_start()
        trainer.on_train_epoch_start()
        trainer.on_train_epoch_end([trainer.train_step(_batch(True, seed=epoch))])
        with torch.no_grad():
            trainer.on_validation_epoch_start()
            trainer.on_validation_epoch_end([trainer.validation_step(_batch(True, seed=9))])
        trainer.on_epoch_end()
    path = Path(trainer.output_folder) / "checkpoint_latest.pth"  # written by on_epoch_end of epoch 1
    assert not list(Path(trainer.output_folder).glob(".*partial*")), "atomic write left a temporary file"
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    for key in GAN_CHECKPOINT_KEYS:
        assert key in checkpoint, key
    assert set(checkpoint["network_weights"]) == set(unwrap(trainer.network).state_dict())  # generator only
    assert (Path(trainer.output_folder) / "progress.png").stat().st_size > 0
    for key in GAN_LOG_KEYS:
        assert len(checkpoint["logging"][key]) == 2

    restored = _trainer(fold=0)
    restored.load_checkpoint(str(path))
    assert restored.current_epoch == 2
    for name, tensor in unwrap(trainer.discriminator).state_dict().items():
        assert torch.equal(tensor, restored.discriminator.state_dict()[name]), name
    saved_opt, loaded_opt = (
        trainer.optimizer_discriminator.state_dict(),
        restored.optimizer_discriminator.state_dict(),
    )
    assert saved_opt["param_groups"][0]["lr"] == loaded_opt["param_groups"][0]["lr"] == pytest.approx(1e-4 * 0.95)
    for idx, state in saved_opt["state"].items():
        assert torch.equal(state["exp_avg"], loaded_opt["state"][idx]["exp_avg"])
        assert float(state["step"]) == float(loaded_opt["state"][idx]["step"]) == 2
    assert restored.lr_scheduler.state_dict()["step_size"] == 1
    restored.on_train_epoch_start()
    assert restored.optimizer.param_groups[0]["lr"] == pytest.approx(5e-4 * 0.95**2)
    assert restored.optimizer_discriminator.param_groups[0]["lr"] == pytest.approx(1e-4 * 0.95**2)

    # a dict is accepted too (nnU-Net 2.8.1's own load_checkpoint only reads paths)
    again = _trainer(fold=0)
    again.load_checkpoint(checkpoint)
    assert again.current_epoch == 2


def test_checkpoint_without_gan_state_keeps_fresh_discriminator(nnunet_dirs: Path, tmp_path: Path) -> None:
    trainer = _trainer()
    path = tmp_path / "generator_only.pth"
    trainer.save_checkpoint(str(path))
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    for key in GAN_CHECKPOINT_KEYS:
        del checkpoint[key]
    for key in GAN_LOG_KEYS:
        del checkpoint["logging"][key]
    torch.save(checkpoint, path)
    other = _trainer(fold=0)
    fresh = _state_copy(other.discriminator)
    other.load_checkpoint(str(path))
    assert all(torch.equal(v, other.discriminator.state_dict()[k]) for k, v in fresh.items())
    for key in GAN_LOG_KEYS:  # logger keys re-created so logging the next epoch does not assert
        assert key in other.logger.local_logger.my_fantastic_logging


def test_ignore_label_is_rejected_with_a_clear_error(nnunet_dirs: Path) -> None:
    dataset_json = copy.deepcopy(LABELS_JSON)
    dataset_json["labels"]["ignore"] = 4
    trainer = nnUNetTrainerTCuPGAN_tiny(
        plans=_plans(), configuration="3d_fullres", fold=0, dataset_json=dataset_json, device=torch.device("cpu")
    )
    with pytest.raises(ValueError, match="ignore label"):
        trainer.initialize()


def test_train_step_adds_paper_noise_but_validation_does_not(
    nnunet_dirs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nnunet_tcup.trainers.nnUNetTrainerTCuPGAN as module

    calls = []
    real = module.nonzero_gaussian_noise

    def recording(data, sigma, generator=None):
        calls.append(sigma)
        return real(data, sigma, generator)

    monkeypatch.setattr(module, "nonzero_gaussian_noise", recording)
    trainer = _trainer()
    trainer.on_train_epoch_start()
    trainer.train_step(_batch(True))
    assert calls == [0.1]
    with torch.no_grad():
        trainer.on_validation_epoch_start()
        trainer.validation_step(_batch(True))
    assert calls == [0.1]


def test_2d_configuration_is_rejected_with_a_clear_error() -> None:
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = _plans()
    plans["configurations"]["2d"] = {
        **copy.deepcopy(plans["configurations"]["3d_fullres"]),
        "data_identifier": "nnUNetPlans_2d",
        "patch_size": [16, 16],
    }
    manager = PlansManager(plans)
    with pytest.raises(ValueError, match="3D configuration"):
        nnUNetTrainerTCuPGAN.build_network_architecture(manager, manager.get_configuration("2d"), 4, 3, False)
