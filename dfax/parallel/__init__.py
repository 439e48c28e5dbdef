"""Meshes, sharding rules and collective counting for sharded DFA training."""

from dfax.parallel.mesh import (batch_sharding, count_collectives, make_mesh, param_spec,
                                shard_params)

__all__ = ["make_mesh", "param_spec", "shard_params", "batch_sharding", "count_collectives"]
