"""lightonml's simulated OPU against dfax's simulator: values and degradation, printed.

  python scripts/opu_lightonml_compare.py [--batch 128 --n-out 32 --width 1024]

Both project the same error at the same settings (noise off: lightonml's
simulated device has none), each through its own medium. Printed per setting:
the correlation of each projection with the exact linear projection of the
unternarised error through that device's own effective matrix, and the
projected values' std and kurtosis. ``tests/opu/test_lightonml_backend.py``
asserts the same agreement at a smaller size.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

import dfax
from dfax import opu

SETTINGS = [{"bits": 2}, {"bits": 4}, {"bits": 6}, {"bits": 8}, {"bits": None},
            {"threshold": 0.25}, {"threshold": 0.5}, {"threshold": 2.0}, {"topk": 0.1}]


def parse(argv=None) -> argparse.Namespace:
  """The command line's arguments."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--n-out", type=int, default=32)
  parser.add_argument("--width", type=int, default=1024)
  return parser.parse_args(argv)


def main(argv=None):
  args = parse(argv)
  import lightonml

  points = [dfax.PointSpec("p/in", (args.batch, args.width), jnp.float32)]
  error = jax.random.normal(jax.random.key(0), (args.batch, args.n_out))
  key = jax.random.key(1)
  exact_sim = np.ravel(opu.digital_reference(key)(error, points)[0])
  device = lightonml.OPU(n_components=8, max_n_features=8, simulated=True)
  print(f"lightonml {lightonml.__version__}, jax {jax.__version__}; error {error.shape} -> "
        f"{args.width}")
  print(f"{'setting':>16} | corr lightonml  dfax | std lightonml  dfax | kurtosis lightonml  dfax")
  for setting in SETTINGS:
    config = opu.OPUConfig(noise=False, **setting)
    proj = opu.make_lightonml_projector(device, config)
    got = np.ravel(proj(error, points)[0])
    m = np.asarray(device.device.random_matrix)
    a = m[args.n_out:].sum(0)
    reff = np.real(np.conj(a) / np.abs(a) * m[:args.n_out])
    exact = np.ravel(np.asarray(error) @ reff)
    sim = np.ravel(opu.make_projector(config, key=key)(error, points)[0])
    name = ",".join(f"{k}={v}" for k, v in setting.items())
    print(f"{name:>16} | {np.corrcoef(got, exact)[0, 1]:14.4f} {np.corrcoef(sim, exact_sim)[0, 1]:5.4f}"
          f" | {np.std(got):13.3f} {np.std(sim):5.3f} | {stats.kurtosis(got):18.3f} "
          f"{stats.kurtosis(sim):5.3f}")


if __name__ == "__main__":
  main()
