"""Weight averages (docs/techniques.md §2.5): an fp32 EMA of every floating tensor of the state_dict,
updated every step, and an optional SWA (uniform average of snapshots every N steps late in training,
of the raw weights or of the EMA's: train.swa_mode, golf/train/loop.py).

EMA warm-up. A plain EMA started from the init keeps decay^t of the init weights after t updates:
at decay 0.9965 and 144 steps that is 0.9965^144 ≈ 0.60, so a short run's "average" is mostly the
random init. We therefore use the per-update decay

    decay_t = min(decay, (1 + t) / (10 + t))        (t = 0, 1, 2, ... updates so far)

which equals the plain decay once t ≥ 9/(1 - decay) - 1 (≈ 2,560 steps at 0.9965), so long runs are
unchanged, while early on the average tracks the weights (decay_0 = 0.1). After 144 steps the init's
weight is prod_t decay_t = 9!·144!/153! ≈ 1e-10 instead of 0.60. `warmup=False` (train.ema_warmup)
uses the plain decay from the first update.
"""

from __future__ import annotations

import torch


def warmup_decay(decay: float, t: int) -> float:
    """The decay used at update number t (0-based)."""
    return min(decay, (1.0 + t) / (10.0 + t))


def _float_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if v.is_floating_point()}


class EMA:
    """fp32 shadow of a model's floating state; `update(model)` after every optimizer step."""

    def __init__(self, model: torch.nn.Module, decay: float, warmup: bool = True) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay, self.warmup, self.updates = decay, warmup, 0
        self.shadow = {k: v.detach().float().clone() for k, v in _float_state(model).items()}

    def current_decay(self) -> float:
        return warmup_decay(self.decay, self.updates) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        d = self.current_decay()
        cur = _float_state(model)
        keys = list(self.shadow)
        shadow = [self.shadow[k] for k in keys]
        new = [cur[k].detach().float() for k in keys]
        torch._foreach_lerp_(shadow, new, 1.0 - d)  # s <- d*s + (1-d)*w
        self.updates += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    @torch.no_grad()
    def copy_to(self, model: torch.nn.Module) -> None:
        """Load the averaged weights into `model` (cast to each tensor's own dtype)."""
        load_average(model, self.shadow)


class SWA:
    """Uniform average of snapshots taken every `every` steps once training fraction ≥ start_frac and,
    with max_lr_mul > 0, while the step's lr multiplier is below it ("tight SWA", docs/techniques.md §2.5)."""

    def __init__(self, every: int, start_frac: float, max_lr_mul: float = 0.0) -> None:
        self.every, self.start_frac, self.max_lr_mul = every, start_frac, max_lr_mul
        self.sum: dict[str, torch.Tensor] = {}
        self.count = 0

    def due(self, step: int, frac: float, lr_mul: float = 1.0) -> bool:
        low_lr = self.max_lr_mul <= 0 or lr_mul < self.max_lr_mul
        return frac >= self.start_frac and low_lr and self.every > 0 and step % self.every == 0

    @torch.no_grad()
    def add(self, model: torch.nn.Module) -> None:
        """Snapshot the model's own (raw) floating state."""
        self.add_state(_float_state(model))

    @torch.no_grad()
    def add_state(self, state: dict[str, torch.Tensor]) -> None:
        """Snapshot a state dict (the model's, or an EMA shadow)."""
        if not self.sum:
            self.sum = {k: v.detach().float().clone() for k, v in state.items()}
        else:
            for k, v in state.items():
                self.sum[k].add_(v.detach().float())
        self.count += 1

    def average(self) -> dict[str, torch.Tensor]:
        return {k: v / self.count for k, v in self.sum.items()}


@torch.no_grad()
def load_average(model: torch.nn.Module, avg: dict[str, torch.Tensor]) -> None:
    state = model.state_dict()
    for k, v in avg.items():
        state[k].copy_(v.to(state[k].dtype))
