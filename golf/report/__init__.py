"""`golf report`: `dvc exp show --json` -> one ablation table, a compliance table and a bytes-vs-BPB plot.

exps.py reads the experiments, timings.py their own stage times (metrics/timings/ at each git
rev), table.py groups them over `train.seed` (mean ± std, the leaderboard's Welch test from
stats.py, compliance from golf/compliance.py), render.py writes markdown, CSV and the PNG.
"""
