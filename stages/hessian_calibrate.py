"""hessian_calibrate: not built yet (issue 5)."""

from stages.common import not_built

command = not_built("hessian-calibrate", "issue 5")
