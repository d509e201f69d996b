"""Validation scoring: exact BPB, sliding windows, score-first test-time training.

`plain.evaluate` is the one every stage uses (train, quantize, prune_to_budget, ttt_eval);
`sliding`, `ttt` (chunked global SGD) and `lora_ttt` (per-document LoRA + phased global SGD) are
the scoring modes of `ttt_eval`. Every mode scores every val token exactly once, before any
update that has seen it (docs/techniques.md §7.5 C1-C4), and charges bytes from the val sidecar.
"""
