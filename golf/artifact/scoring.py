"""BPB bookkeeping shared by every eval mode: fp64 sums over exactly the scored tokens.

BPB = Σ NLL / (ln 2 · Σ bytes) (docs/techniques.md §1.6). A scored token is named by its position
`t` in the val stream (t >= 1: token 0 has no predecessor); its NLL is -log p(x_t | x_<t) with
the full-vocabulary softmax and its bytes are the val byte sidecar's `val_bytes[t]` (BOS = 0).
The three sums (nll, tokens, bytes) are fp64 and all-reduced when torch.distributed is
initialised, so numerator and denominator always cover the same set (§1.7 d, e).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch

from golf.artifact.runtime import all_reduce_sum
from golf.errors import GolfError


@dataclass(frozen=True)
class EvalResult:
    """One eval's score over the tokens it scored."""

    loss: float
    """Mean NLL, nats per scored token."""
    bpb: float
    """Bits per byte: Σ NLL / (ln 2 · Σ bytes)."""
    tokens: int
    """Tokens scored (each exactly once)."""
    bytes: int
    """UTF-8 bytes those tokens cover (from the sidecar)."""

    def as_dict(self) -> dict[str, Any]:
        return {"loss": self.loss, "bpb": self.bpb, "tokens": self.tokens, "bytes": self.bytes}


# -- inputs -----------------------------------------------------------------------------------

def as_numpy(a: Any, name: str) -> np.ndarray:
    """A 1-D integer array view (numpy memmap, numpy array or CPU tensor)."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
        raise GolfError(f"{name}: expected a 1-D integer array, got shape {a.shape} dtype {a.dtype}")
    return a


def check_inputs(tokens: np.ndarray, val_bytes: np.ndarray, seq_len: int) -> None:
    """The val stream can fill one window and the sidecar covers every token."""
    if seq_len < 1:
        raise GolfError(f"seq_len = {seq_len}: must be >= 1")
    if len(tokens) < seq_len + 1:
        raise GolfError(f"val split has {len(tokens):,} tokens, shorter than one window of "
                        f"seq_len {seq_len} (+1 target); use more val data or a shorter seq_len")
    if len(val_bytes) < len(tokens):
        raise GolfError(f"val byte sidecar has {len(val_bytes):,} entries for {len(tokens):,} val tokens")
    if int(val_bytes[: len(tokens)].min(initial=0)) < 0:
        raise GolfError("val byte sidecar has negative byte counts")


def check_sidecar(tokens: Any, val_bytes: Any, luts: Any, start: int = 1, end: int | None = None) -> int:
    """The sidecar over scored positions [start, end) must equal the tokenizer's LUT rule (§1.6),
    token by token; CaseOps LUTs charge the operator pieces 0 (golf.artifact.bpb.rule_luts).

    The sidecar is the byte denominator; the LUT rule (golf.artifact.bpb.target_bytes) is an
    independent derivation from the tokenizer. Returns the byte total; a mismatch is a GolfError.
    """
    from golf.artifact.bpb import target_bytes

    tok = as_numpy(tokens, "val tokens")
    vb = as_numpy(val_bytes, "val byte sidecar")
    end = len(tok) if end is None else end
    start = max(start, 1)
    side = lut = 0
    first = -1
    for lo in range(start, end, 1 << 22):  # blocks: the LUT rule makes int arrays per token
        hi = min(lo + (1 << 22), end)
        got = np.asarray(target_bytes(tok[lo - 1: hi - 1].astype(np.int64), tok[lo:hi].astype(np.int64), luts))
        have = vb[lo:hi].astype(np.int64)
        side, lut = side + int(have.sum()), lut + int(got.sum())
        if first < 0 and (bad := np.flatnonzero(have != got)).size:
            first = lo + int(bad[0])
    if first >= 0:
        raise GolfError(f"val byte sidecar sums to {side:,} bytes over tokens [{start}, {end}) but the "
                        f"tokenizer's LUT rule gives {lut:,} ({side - lut:+,}; first at token {first:,}, id "
                        f"{int(tok[first])}): the sidecar does not match the tokenizer")
    return side


# -- the sums ---------------------------------------------------------------------------------

class Totals:
    """fp64 Σ nll, tokens, bytes, plus per-bucket sums for a BPB-by-position plot.

    `keep_tokens=True` also keeps each position's NLL and how often it was scored (tests: the
    leakage and scored-exactly-once properties); it costs 12 bytes per val token.
    """

    def __init__(self, val_bytes: Any, n_tokens: int, num_buckets: int = 0, keep_tokens: bool = False):
        self.vb = as_numpy(val_bytes, "val byte sidecar")
        self.n_tokens = n_tokens
        self.sums = torch.zeros(3, dtype=torch.float64)  # nll, tokens, bytes
        nb = max(0, min(num_buckets, n_tokens))
        self.bucket_width = math.ceil(n_tokens / nb) if nb else 0
        self.buckets = torch.zeros(3, nb, dtype=torch.float64)
        self.token_nll = np.full(n_tokens, np.nan) if keep_tokens else None
        self.count = np.zeros(n_tokens, dtype=np.int32) if keep_tokens else None
        self.reduced = False

    def add(self, positions: torch.Tensor, nll: torch.Tensor, window_pos: Any = None) -> None:
        """Score the tokens at stream `positions` (1-D) with per-token `nll` (same shape). `window_pos`:
        each one's input offset in its window, for `add_tokens` of a subclass (not kept here)."""
        pos = positions.detach().reshape(-1).cpu().numpy()
        if len(pos) == 0:
            return
        nll64 = nll.detach().reshape(-1).double()
        b = torch.from_numpy(self.vb[pos].astype(np.float64))
        self.sums += torch.stack([nll64.sum().cpu(), torch.tensor(float(len(pos)), dtype=torch.float64), b.sum()])
        if self.wants_tokens():  # the per-token NLL comes to the host only for what keeps it
            self.add_tokens(pos, nll64.cpu(), b, window_pos)

    def wants_tokens(self) -> bool:
        """Whether `add_tokens` needs each scored token (else only the sums are kept)."""
        return bool(self.buckets.shape[1]) or self.token_nll is not None

    def add_tokens(self, pos: np.ndarray, nll: torch.Tensor, nbytes: torch.Tensor, window_pos: Any) -> None:
        """Per token, on the host: stream positions, fp64 NLLs and bytes (one copy of each per batch,
        shared with subclasses: golf/eval/diagnostics.py)."""
        if self.buckets.shape[1]:
            idx = torch.from_numpy(pos // self.bucket_width)
            self.buckets[0].index_add_(0, idx, nll)
            self.buckets[1].index_add_(0, idx, torch.ones_like(nll))
            self.buckets[2].index_add_(0, idx, nbytes)
        if self.token_nll is not None:
            self.token_nll[pos] = nll.numpy()
            np.add.at(self.count, pos, 1)

    def all_reduce(self) -> None:
        if not self.reduced:
            all_reduce_sum(self.sums)
            if self.buckets.numel():
                all_reduce_sum(self.buckets)
            self.reduced = True

    def result(self) -> EvalResult:
        """The score, after summing over ranks."""
        self.all_reduce()
        nll, tokens, nbytes = self.sums.tolist()
        if tokens <= 0:
            raise GolfError("no tokens were scored")
        if nbytes <= 0:
            raise GolfError(f"the {int(tokens):,} scored tokens cover 0 bytes: the byte sidecar is empty or all zero")
        return EvalResult(loss=nll / tokens, bpb=nll / (math.log(2) * nbytes), tokens=int(tokens), bytes=int(nbytes))

    def bucket_rows(self) -> list[dict[str, float]]:
        """[{position (first token of the bucket), bpb}] for buckets that scored bytes."""
        self.all_reduce()
        rows = []
        for i in range(self.buckets.shape[1]):
            nll, _, nbytes = self.buckets[:, i].tolist()
            if nbytes > 0:
                rows.append({"position": i * self.bucket_width, "bpb": nll / (math.log(2) * nbytes)})
        return rows


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """model.eval() for the block, then back to what it was."""
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)
