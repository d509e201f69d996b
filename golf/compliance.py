"""Would this run be accepted? Training time, eval time and artifact bytes against the challenge's limits.

The challenge allows 600 s of training and 600 s of evaluation (on 8xH100) and 16,000,000 bytes
(decimal) of code + compressed model (docs/ablation.md, "Wall time and compliance"). Hessian
calibration on training data counts as training, so with `hessian_calibrate.source = train`
its collection time is added to the training time; with `self_generated` (the model's own
samples) it is not.

The times are what golf measured at the world size it ran on; the verdict says whether they fit
there, not what they would be on another machine. Which numbers go in:

- training: `train.train_s` (the optimizer steps only, as in the records: golf/train/loop.py)
  plus `hessian_calibrate.collect_s` when calibration reads train data;
- evaluation: the whole `ttt_eval` process, `ttt_eval.wall_s` (artifact decode and every scoring
  mode it ran, not only the headline one);
- bytes: `compress.total_bytes`.

Pure functions on numbers and dicts: `golf report` calls `from_stages`, `golf ttt-eval` can call
`check` with its own clock.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

TRAIN_LIMIT_S = 600.0
EVAL_LIMIT_S = 600.0
CAP_BYTES = 16_000_000
CALIBRATION_READS_TRAIN = "train"
"""The hessian_calibrate.source value that reads training data (golf/quant/config.py)."""


@dataclass(frozen=True)
class Compliance:
    """Measured values (None = not measured) and whether each fits its limit (None = unknown)."""

    train_s: float | None
    """Training time counted against TRAIN_LIMIT_S: train_s, plus calibration_s when counted."""
    calibration_s: float
    """Hessian calibration seconds inside train_s (0.0 when it does not read training data)."""
    eval_s: float | None
    total_bytes: int | None
    train_world_size: int | None
    eval_world_size: int | None
    fits_train: bool | None
    fits_eval: bool | None
    fits_bytes: bool | None

    @property
    def fits(self) -> bool | None:
        """All three fit (False if any is over, None if none is over but one is unknown)."""
        verdicts = (self.fits_train, self.fits_eval, self.fits_bytes)
        return False if False in verdicts else None if None in verdicts else True

    def as_metrics(self) -> dict[str, Any]:
        """Flat values for a metrics file, prefixed `compliance_` (None -> omitted)."""
        values = {**asdict(self), "fits": self.fits}
        return {f"compliance_{k}": v for k, v in values.items() if v is not None}


def _number(v: Any) -> float | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    return float(v) if ok else None


def _under(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def check(train_s: float | None, calibration_s: float | None, calibration_reads_train: bool,
          eval_s: float | None, total_bytes: int | None,
          train_world_size: int | None = None, eval_world_size: int | None = None) -> Compliance:
    """The verdicts for one run's numbers (None where a number was not measured)."""
    train_s, eval_s = _number(train_s), _number(eval_s)
    calib = (_number(calibration_s) or 0.0) if calibration_reads_train else 0.0
    counted = None if train_s is None or (calibration_reads_train and _number(calibration_s) is None) \
        else round(train_s + calib, 3)
    size = None if _number(total_bytes) is None else int(total_bytes)
    return Compliance(train_s=counted, calibration_s=round(calib, 3), eval_s=eval_s, total_bytes=size,
                      train_world_size=train_world_size, eval_world_size=eval_world_size,
                      fits_train=_under(counted, TRAIN_LIMIT_S), fits_eval=_under(eval_s, EVAL_LIMIT_S),
                      fits_bytes=_under(size, CAP_BYTES))


def from_stages(stages: Mapping[str, Mapping[str, Any]], hessian_source: str | None) -> Compliance:
    """`check` on per-stage values ({"train": {"train_s": ..., "world_size": ...}, ...}: metrics and
    timings merged). hessian_source None (params unknown) counts calibration, the stricter reading."""
    train, calib = stages.get("train", {}), stages.get("hessian_calibrate", {})
    evals, comp = stages.get("ttt_eval", {}), stages.get("compress", {})
    calib_s = calib.get("collect_s", calib.get("wall_s"))
    reads_train = hessian_source in (None, CALIBRATION_READS_TRAIN)
    return check(train.get("train_s"), calib_s, reads_train, evals.get("wall_s"), comp.get("total_bytes"),
                 train.get("world_size"), evals.get("world_size"))


def from_artifacts(train_clock: Mapping[str, Any] | None, hessian_header: Mapping[str, Any] | None,
                   hessian_clock: Mapping[str, Any] | None, total_bytes: int | None, eval_s: float | None,
                   eval_world_size: int | None) -> Compliance:
    """`check` on what the stage outputs record, for `golf ttt-eval`: the checkpoint's clock (train_s,
    world_size: golf/train/run.py), the Hessians' header "source" and their clock's "collect_s"
    (stages/hessian_calibrate.py; clocks: golf/io/metrics.py `clock_path`). A missing clock or key is
    unmeasured; no Hessian header counts calibration, the stricter reading, as `from_stages` does."""
    clock, calib = train_clock or {}, hessian_clock or {}
    reads_train = (hessian_header or {}).get("source", CALIBRATION_READS_TRAIN) == CALIBRATION_READS_TRAIN
    return check(clock.get("train_s"), calib.get("collect_s"), reads_train, eval_s, total_bytes,
                 clock.get("world_size"), eval_world_size)
