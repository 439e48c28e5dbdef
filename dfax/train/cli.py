"""The ``python -m dfax.train`` command: flags, one-line errors, exit statuses.

Exit statuses (see dfax.train.errors and docs/reliability.md): 0 completed
or already complete, 1 stopped on an error, 2 refused before starting
(nothing written), 130 / 143 interrupted by SIGINT / SIGTERM with a
checkpoint saved.
"""

from __future__ import annotations

import logging as std_logging
import os
import sys

from absl import flags, logging
from ml_collections import config_flags

from dfax.data import DataUnavailableError
from dfax.train import distributed
from dfax.train.errors import EXIT_OK, EXIT_REFUSED, ConfigError, RunError, interrupt_exit_code
from dfax.train.trainer import train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics.")
_ALLOW = flags.DEFINE_list(
    "allow_changes", [], "Config keys (or sections, e.g. dfa) allowed to differ from the "
    "workdir's saved config on resume; the change is recorded in changes.jsonl.")
_SKIP = flags.DEFINE_list(
    "skip_batches", [], "Comma-separated steps whose batches get no update (those a "
    "non-finite-loss error names); recorded in changes.jsonl.")
_MULTIHOST = flags.DEFINE_bool(
    "multihost", False, "Start jax.distributed first: one process per host (GPU node, SLURM "
    "task, TPU VM worker), the batch sharded over every device of every process; process 0 "
    "writes the workdir. The cluster's environment gives the coordinator unless the three "
    "flags below are set.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "With --multihost: host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None,
                                      "With --multihost: how many processes the run has.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None,
                                   "With --multihost: this process's index, from 0.")
flags.mark_flags_as_required(["config", "workdir"])


def _fail(message: str, code: int) -> None:
  print(message, file=sys.stderr)
  sys.exit(code)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a bad ``--config.<field>`` reported in one line."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    _fail(f"dfax.train: {e}", EXIT_REFUSED)
  except (AttributeError, KeyError) as e:  # ml_collections: an override of no field
    field = str(e).strip("\"'")
    given = [a.split("=")[0] for a in argv if a.startswith("--config.") and field in a]
    _fail(f"dfax.train: {', '.join(given) or field} names no field of the config file; "
          "overrides are --config.<field>=<value> with the fields of the file (see "
          "dfax/train/config_schema.py).", EXIT_REFUSED)


def _load_config():
  path = config_flags.get_config_filename(flags.FLAGS["config"])
  try:
    config = _CONFIG.value
    config.to_dict()  # the file is loaded lazily: load it here
    return config
  except OSError:
    _fail(f"dfax.train: cannot load the config file {path!r}: it does not exist or does "
          "not define get_config(); give a path such as --config=configs/smoke.py.",
          EXIT_REFUSED)
  except Exception as e:  # noqa: BLE001 - a config file that raises while loading
    _fail(f"dfax.train: the config file {path} failed to load: {type(e).__name__}: {e}",
          EXIT_REFUSED)


def _not_orbax(record: std_logging.LogRecord) -> bool:
  return f"{os.sep}orbax{os.sep}" not in record.pathname


def quiet_logging() -> None:
  """Warnings as plain lines; orbax's own logs off (its failures reach the user as one line)."""
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  logging.get_absl_handler().setFormatter(std_logging.Formatter("%(message)s"))
  std_logging.getLogger("absl").addFilter(_not_orbax)


def main(argv) -> None:
  if len(argv) > 1:
    _fail(f"dfax.train: unexpected arguments {argv[1:]}; all options are --flags.",
          EXIT_REFUSED)
  quiet_logging()
  manual = (_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  if any(v is not None for v in manual) and not _MULTIHOST.value:
    _fail("dfax.train: --coordinator_address, --num_processes and --process_id need "
          "--multihost.", EXIT_REFUSED)
  if _MULTIHOST.value:
    try:
      distributed.initialize(*manual)
    except ConfigError as e:
      _fail(str(e), EXIT_REFUSED)
  config = _load_config()
  try:
    skips = [int(s) for s in _SKIP.value]
  except ValueError:
    _fail(f"dfax.train: --skip_batches={','.join(_SKIP.value)} must be step numbers, e.g. "
          "--skip_batches=17,18.", EXIT_REFUSED)
  try:
    results = train_and_evaluate(config, _WORKDIR.value, allow_changes=_ALLOW.value,
                                 skip_batches=skips)
  except RunError as e:
    _fail(str(e), e.exit_code)
  except DataUnavailableError as e:
    _fail(str(e), EXIT_REFUSED)
  if not distributed.is_primary():  # process 0 speaks for the run
    sys.exit(interrupt_exit_code(results["signal"]) if results["status"] == "interrupted"
             else EXIT_OK)
  if results["status"] == "interrupted" and results.get("started") is False:
    _fail("dfax.train: interrupted during start-up; nothing was written.",
          interrupt_exit_code(results["signal"]))
  if results["status"] == "interrupted":
    print(f"interrupted: {results.get('steps', 0)} steps done, checkpoint saved in "
          f"{_WORKDIR.value}; rerun the same command to resume.", file=sys.stderr)
    sys.exit(interrupt_exit_code(results["signal"]))
  prefix = "already completed" if results.get("already_completed") else results["status"]
  print(f"{prefix}: {results['method']} {results['name']} "
        f"test accuracy {100 * results['test_accuracy']:.2f}% after {results['steps']} steps "
        f"({results['wall_time_s']:.0f} s)")
  sys.exit(EXIT_OK)
