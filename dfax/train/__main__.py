"""Command line: ``python -m dfax.train --config configs/mnist_mlp.py --workdir DIR``.

Any config field can be overridden: ``--config.method=bp --config.num_epochs=5``.
Resume a run by rerunning the same command; see docs/reliability.md for what is
kept, when a resume is refused, and the exit statuses.
"""

import os
import signal
import sys


def _quit_during_start_up(signum, frame):
  """Until the trainer takes over the signals nothing is written: leave at once, quietly.

  (A KeyboardInterrupt raised inside the imports can be swallowed by a garbage
  collector callback, so the signal is handled here rather than as an exception.)
  """
  del frame
  os.write(2, b"dfax.train: interrupted during start-up; nothing was written.\n")
  os._exit(128 + signum)


if __name__ == "__main__":
  for _sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(_sig, _quit_during_start_up)
  from absl import app  # noqa: E402 - after the handlers: the imports take seconds

  from dfax.train import cli  # noqa: E402

  app.run(cli.main, flags_parser=cli.parse_flags)
  sys.exit(0)
