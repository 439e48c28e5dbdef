"""Optical processing unit: a simulated one, a lightonml-driven one, and a cost model."""

from dfax.opu.config import OPUConfig
from dfax.opu.cost import DeviceSpec, StepCost, crossover_width, estimate_cost
from dfax.opu.lighton import make_lightonml_projector
from dfax.opu.projector import digital_reference, make_projector

__all__ = ["DeviceSpec", "OPUConfig", "StepCost", "crossover_width", "digital_reference",
           "estimate_cost", "make_lightonml_projector", "make_projector"]
