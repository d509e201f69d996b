"""compress: not built yet (issue 6)."""

from stages.common import not_built

command = not_built("compress", "issue 6")
