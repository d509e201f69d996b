"""ttt_eval: not built yet (issue 7)."""

from stages.common import not_built

command = not_built("ttt-eval", "issue 7")
