"""quantize: not built yet (issue 5)."""

from stages.common import not_built

command = not_built("quantize", "issue 5")
