"""Simulated optical processing unit: a projector and its cost model."""

from dfax.opu.config import OPUConfig
from dfax.opu.cost import DeviceSpec, StepCost, crossover_width, estimate_cost
from dfax.opu.projector import digital_reference, make_projector

__all__ = ["OPUConfig", "make_projector", "digital_reference", "estimate_cost",
           "crossover_width", "DeviceSpec", "StepCost"]
