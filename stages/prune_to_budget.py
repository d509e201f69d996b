"""prune_to_budget: not built yet (issue 6)."""

from stages.common import not_built

command = not_built("prune-to-budget", "issue 6")
