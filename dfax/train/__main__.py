"""Command line: ``python -m dfax.train --config configs/mnist_mlp.py --workdir DIR``.

Any config field can be overridden: ``--config.method=bp --config.num_epochs=5``.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from dfax.train.trainer import train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  results = train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  print(f"{results['status']}: {results['method']} {results['name']} "
        f"test accuracy {100 * results['test_accuracy']:.2f}% after {results['steps']} steps "
        f"({results['wall_time_s']:.0f} s)")


if __name__ == "__main__":
  app.run(main)
