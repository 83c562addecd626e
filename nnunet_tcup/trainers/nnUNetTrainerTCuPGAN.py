from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class nnUNetTrainerTCuPGAN(nnUNetTrainer):
    """Placeholder."""
