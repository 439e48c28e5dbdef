"""Meshes, sharding rules, collective counting, pipelines and layer-parallel DFA."""

from dfax.parallel.mesh import (batch_sharding, count_collectives, make_mesh, make_pipeline_mesh,
                                param_spec, shard_params)

__all__ = ["make_mesh", "make_pipeline_mesh", "param_spec", "shard_params", "batch_sharding",
           "count_collectives"]
