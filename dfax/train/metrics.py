"""metrics.jsonl, results.json and config.json in the workdir."""

from __future__ import annotations

import json
import math
import os
from typing import Any


class MetricsWriter:
  """Appends one JSON object per line to ``workdir/metrics.jsonl``.

  On resume, lines past the restored step are dropped first, so the file
  always describes one uninterrupted run.
  """

  def __init__(self, workdir: str, resume_step: int = 0):
    self.path = os.path.join(workdir, "metrics.jsonl")
    rows = read_metrics(self.path) if os.path.exists(self.path) else []
    keep = [r for r in rows if r.get("step", 0) <= resume_step]
    with open(self.path, "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in keep)

  def write(self, row: dict[str, Any]) -> None:
    with open(self.path, "a") as f:
      f.write(json.dumps({k: _plain(v) for k, v in row.items()}) + "\n")


def _plain(v):
  if isinstance(v, dict):
    return {k: _plain(x) for k, x in v.items()}
  v = float(v) if hasattr(v, "__float__") and not isinstance(v, (int, str)) else v
  return None if isinstance(v, float) and not math.isfinite(v) else v


def read_metrics(path: str) -> list[dict[str, Any]]:
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def write_json(path: str, obj: Any) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True, default=_plain)
  os.replace(tmp, path)
