"""Fit the artifact to the byte budget: selective ±1 pruning by real-compressor binary search, and
optional magnitude / 2:4 / Hessian-guided 2:4 pruning of the integer codes."""
