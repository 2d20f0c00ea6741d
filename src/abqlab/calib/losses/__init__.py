"""Block-output losses, each registered by name and weighted by ``calib.losses.<name>``."""

from abqlab.registry import Registry

LOSSES: Registry = Registry("calibration loss")
LOSSES.register("mse_fp", "abqlab.calib.losses.mse:mse_fp")
LOSSES.register("mse_fpstar", "abqlab.calib.losses.mse:mse_fpstar")
LOSSES.register("dlc", "abqlab.calib.losses.dlc:double_log_cosine")
LOSSES.register("akl", "abqlab.calib.losses.akl:attention_kl")
LOSSES.register("nmse_fp", "abqlab.calib.losses.token_mse:nmse_fp")
LOSSES.register("nmse_fpstar", "abqlab.calib.losses.token_mse:nmse_fpstar")
