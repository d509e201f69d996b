"""ttt_eval's diagnostics: NLL and BPB by position in the window, and word-start vs continuation tokens.

`DiagTotals` is the scorer's `Totals` (golf/artifact/scoring.py) plus two more sets of fp64 sums, so
every mode fills them while it scores, at no extra forward pass:

- by window position: a scored token's input offset k in the window that scored it (its prediction
  saw k + 1 tokens of that window; under document masking, fewer when a BOS is inside), in
  `num_buckets` equal spans of [0, seq_len). Plain eval scores every offset alike; sliding scores
  offsets >= seq_len - stride only (after its first window), so its BPB is about plain's BPB at those
  offsets (docs/diagnostics.md).
- by word class of the target piece (golf/artifact/bpb.py LUTs): word_start = it starts a word (a
  leading "▁", or the first piece after a boundary such as BOS, which has no "▁" because
  add_dummy_prefix is off), continuation = any other piece that stands for text, boundary = a
  control target (BOS: the next document's start, 0 bytes).
- paired with plain (`keep_nll`: 4 bytes per val token): every mode scores every token once, so
  mode minus plain NLL token by token, bucketed by the token's offset in its *plain* window, splits
  the difference of the two BPBs exactly by how much context plain gave each token.

The counts are kept on the host; torch.distributed all-reduces them with the main sums.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from golf.artifact.runtime import all_reduce_sum
from golf.artifact.scoring import Totals

WORD_CLASSES = ("word_start", "continuation", "boundary")
MODES = ("plain", "sliding", "ttt")  # golf/eval/run.py, in the order it runs them


def word_classes(tokens: np.ndarray, luts: Any) -> np.ndarray:
    """uint8 per stream position: the WORD_CLASSES index of the token there as a target (position 0:
    boundary, it is never scored)."""
    tok = np.asarray(tokens, np.int64)
    prev = np.concatenate([[tok[0]], tok[:-1]])
    bound_y, bound_x = luts.is_boundary[tok], luts.is_boundary[prev]
    starts = ~bound_y & (luts.has_leading_space[tok] | bound_x)
    cls = np.where(bound_y, 2, np.where(starts, 0, 1)).astype(np.uint8)
    cls[0] = 2
    return cls


def _bpb(nll: float, nbytes: float) -> float | None:
    return nll / (math.log(2) * nbytes) if nbytes > 0 else None


class DiagTotals(Totals):
    """Totals with sums by window-position bucket and by word class (`classes`: `word_classes`, or None)."""

    def __init__(self, val_bytes: Any, n_tokens: int, num_buckets: int, seq_len: int,
                 classes: np.ndarray | None = None, keep_tokens: bool = False, keep_nll: bool = False):
        super().__init__(val_bytes, n_tokens, num_buckets, keep_tokens)
        self.nll32 = np.zeros(n_tokens, np.float32) if keep_nll else None  # summed over ranks: zeros
        nb = max(1, min(num_buckets, seq_len))
        self.window_width = math.ceil(seq_len / nb)
        self.window = torch.zeros(3, math.ceil(seq_len / self.window_width), dtype=torch.float64)
        self.classes = classes
        self.by_class = torch.zeros(3, len(WORD_CLASSES), dtype=torch.float64)  # nll, tokens, bytes
        self.unplaced = 0  # tokens scored without a window position

    def wants_tokens(self) -> bool:
        return True

    def add_tokens(self, pos: np.ndarray, nll: torch.Tensor, nbytes: torch.Tensor, window_pos: Any) -> None:
        super().add_tokens(pos, nll, nbytes, window_pos)
        if self.nll32 is not None:
            self.nll32[pos] = nll.numpy()
        rows = torch.stack([nll, torch.ones_like(nll), nbytes])
        if window_pos is None:
            self.unplaced += len(pos)
        else:
            k = torch.as_tensor(window_pos).detach().reshape(-1).cpu().long() // self.window_width
            self.window.index_add_(1, k, rows)
        if self.classes is not None:
            self.by_class.index_add_(1, torch.from_numpy(self.classes[pos].astype(np.int64)), rows)

    def all_reduce(self) -> None:
        if not self.reduced:
            all_reduce_sum(self.window)
            all_reduce_sum(self.by_class)
            if self.nll32 is not None:
                all_reduce_sum(torch.from_numpy(self.nll32))  # shares memory: reduced in place
        super().all_reduce()

    def window_rows(self) -> list[dict[str, float]]:
        """[{position (first input offset of the bucket), tokens, nll (nats per token), bpb}] for buckets
        that scored tokens; empty when the mode left any token without a window position."""
        self.all_reduce()
        if self.unplaced:
            return []
        rows = []
        for i in range(self.window.shape[1]):
            nll, toks, nbytes = self.window[:, i].tolist()
            if toks > 0:
                rows.append({"position": i * self.window_width, "tokens": int(toks), "nll": nll / toks,
                             "bpb": _bpb(nll, nbytes)})
        return rows

    def class_stats(self) -> dict[str, dict[str, float | int | None]]:
        """{word class: {tokens, bytes, nll (nats per token), bpb}}; {} without LUTs."""
        self.all_reduce()
        if self.classes is None:
            return {}
        out = {}
        for i, name in enumerate(WORD_CLASSES):
            nll, toks, nbytes = self.by_class[:, i].tolist()
            out[name] = {"tokens": int(toks), "bytes": int(nbytes), "nll": nll / toks if toks else None,
                         "bpb": _bpb(nll, nbytes)}
        return out


def paired_with_plain(plain: DiagTotals, other: DiagTotals, seq_len: int) -> list[dict[str, Any]]:
    """[{position, dnll, dbpb_share}] by the token's offset in its plain window (t - 1) mod seq_len
    (plain's windows start at multiples of seq_len): dnll = mean(other - plain NLL) there, and
    dbpb_share = that bucket's part of other's BPB minus plain's (the column sums to the difference)."""
    plain.all_reduce()
    other.all_reduce()
    n = len(plain.nll32)
    bucket = ((np.arange(1, n) - 1) % seq_len) // plain.window_width
    d = other.nll32[1:].astype(np.float64) - plain.nll32[1:].astype(np.float64)
    size = int(bucket.max(initial=0)) + 1
    tokens, dsum = np.bincount(bucket, minlength=size), np.bincount(bucket, weights=d, minlength=size)
    total_bytes = float(plain.vb[1:n].astype(np.float64).sum())
    return [{"position": int(i) * plain.window_width, "dnll": dsum[i] / tokens[i],
             "dbpb_share": dsum[i] / (math.log(2) * total_bytes)} for i in range(size) if tokens[i]]


def window_table(windows: dict[str, list[dict[str, Any]]],
                 paired: dict[str, list[dict[str, Any]]] | None = None) -> list[dict[str, Any]]:
    """One row per window position, columns tokens_<mode>, nll_<mode>, bpb_<mode> for every mode of
    MODES, then dnll_<mode>, dbpb_share_<mode> of `paired_with_plain` for the others (blank where a mode
    did not run or has nothing in that bucket): the CSV dvc plots draws, one line per mode. Every
    column is always there, since dvc plots refuses a plot whose y field is missing (dvc.yaml)."""
    by = {m: {r["position"]: r for r in windows.get(m, [])} for m in MODES}
    by_pair = {m: {r["position"]: r for r in (paired or {}).get(m, [])} for m in MODES[1:]}
    table = []
    for p in sorted({p for rows in (*by.values(), *by_pair.values()) for p in rows}):
        row: dict[str, Any] = {"position": p}
        for m in MODES:
            r = by[m].get(p, {})
            row.update({f"tokens_{m}": r.get("tokens", 0), f"nll_{m}": r.get("nll", ""), f"bpb_{m}": r.get("bpb", "")})
        for m in MODES[1:]:
            r = by_pair[m].get(p, {})
            row.update({f"dnll_{m}": r.get("dnll", ""), f"dbpb_share_{m}": r.get("dbpb_share", "")})
        table.append(row)
    return table


def plot_windows(path: Any, windows: dict[str, list[dict[str, Any]]], overall: dict[str, float], seq_len: int,
                 stride: int, paired: dict[str, list[dict[str, Any]]] | None = None) -> None:
    """A PNG of NLL and BPB by window position, one line per mode, each mode's overall BPB dashed, and
    each mode's NLL minus plain's by plain window offset (`paired_with_plain`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from golf.io.atomic import atomic_write_bytes

    fig, (ax_nll, ax_bpb, ax_d) = plt.subplots(3, 1, figsize=(8, 10), sharex=True)
    for m, rows in windows.items():
        if not rows:
            continue
        x = [r["position"] for r in rows]
        line, = ax_nll.plot(x, [r["nll"] for r in rows], marker=".", label=m)
        ax_bpb.plot(x, [r["bpb"] for r in rows], marker=".", color=line.get_color(), label=m)
        if m in overall:
            ax_bpb.axhline(overall[m], color=line.get_color(), ls="--", lw=0.8)
        pair = (paired or {}).get(m) or []
        if pair:
            ax_d.plot([r["position"] for r in pair], [r["dnll"] for r in pair], marker=".", color=line.get_color(),
                      label=f"{m} - plain")
    ax_bpb.axvline(seq_len - stride, color="grey", ls=":", lw=0.8)
    ax_d.axhline(0.0, color="grey", lw=0.8)
    ax_nll.set_ylabel("mean NLL (nats / token)")
    ax_bpb.set_ylabel("BPB (dashed: mode overall)")
    ax_d.set_ylabel("NLL minus plain's, same tokens")
    if ax_d.lines[1:]:
        ax_d.legend()
    ax_d.set_xlabel(f"input offset in the window (top two: the mode's own window; bottom: the plain window);"
                    f"\nseq_len {seq_len}, dotted: seq_len - stride = {seq_len - stride}")
    ax_nll.legend()
    ax_nll.set_title("ttt-eval: loss by position in the context window")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())
