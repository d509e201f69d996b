"""corpus: not built yet (issue 3)."""

from stages.common import not_built

command = not_built("corpus", "issue 3")
