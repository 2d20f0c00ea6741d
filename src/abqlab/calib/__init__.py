"""Calibration methods (presets) and their components."""

from abqlab.registry import Registry

METHODS: Registry = Registry("calibration method")
METHODS.register("rtn", "abqlab.calib.rtn:calibrate_rtn")
