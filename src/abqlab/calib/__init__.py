"""Calibration methods (``calib.method``), components (``calib.components``), losses."""

from abqlab.registry import Registry

METHODS: Registry = Registry("calibration method")
METHODS.register("rtn", "abqlab.calib.rtn:calibrate_rtn")
METHODS.register("blockwise", "abqlab.calib.blockwise:calibrate_blockwise")
METHODS.register("load", "abqlab.calib.from_file:calibrate_from_file")
