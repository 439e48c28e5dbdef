"""Command line: ``python -m dfax.train --config configs/mnist_mlp.py --workdir DIR``.

Any config field can be overridden: ``--config.method=bp --config.num_epochs=5``.
Resume a run by rerunning the same command; see docs/reliability.md for what is
kept, when a resume is refused, and the exit statuses.
"""

import sys

from dfax import _startup as startup  # imports nothing heavy


if __name__ == "__main__":
  startup.install()  # again: `import dfax` installed it already when run as -m dfax.train
  from absl import app  # noqa: E402 - after the handlers: the imports take seconds

  from dfax.train import cli  # noqa: E402

  app.run(cli.main, flags_parser=cli.parse_flags)
  sys.exit(0)
