"""train: not built yet (issue 4)."""

from stages.common import not_built

command = not_built("train", "issue 4")
