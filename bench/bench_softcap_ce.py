"""golf::softcap_ce_with_grads (golf/kernels/softcap_ce.py) at the record's head shape (98,304 tokens of
512 dims through a tied 8,192 x 512 embedding, softcap 30), forward + backward: the kernels' device us per
call (torch.profiler, bench/kernel_time.py) with the GPU's tanh.approx and with the exact tanh, against
inductor's kernels for the eager head, and the loss and gradients' distance from an fp32 reference.

    python bench/bench_softcap_ce.py
"""

from __future__ import annotations

import torch
from kernel_time import golf_kernels, kernel_us

from golf.kernels import softcap_ce as mod


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


def fp32_head(h: torch.Tensor, w: torch.Tensor, y: torch.Tensor, softcap: float) -> torch.Tensor:
    """The summed NLL in fp32 from the bf16-rounded operands both paths multiply."""
    z = h.to(torch.bfloat16).float() @ w.to(torch.bfloat16).float().t()
    return torch.nn.functional.cross_entropy(softcap * torch.tanh(z / softcap), y, reduction="sum")


def main() -> None:
    dev = torch.device("cuda")
    torch.manual_seed(0)
    h = torch.randn(98_304, 512, device=dev, dtype=torch.bfloat16, requires_grad=True)
    w = (torch.randn(8_192, 512, device=dev) * 0.05).requires_grad_()
    y = torch.randint(0, 8_192, (98_304,), device=dev)

    def step(fn):  # autograd.grad: no accumulation kernels into .grad
        return lambda: (lambda loss: (loss, *torch.autograd.grad(loss, (h, w))))(fn(h, w, y, 30.0))

    truth = step(fp32_head)()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        print("| path | kernels, fwd + bwd us | golf's kernels us | loss rel. err | grad h / grad W rel. err |")
        print("|---|---:|---|---:|---|")
        paths = [("inductor (torch.compile of the eager head)", torch.compile(mod.softcap_ce_reference), None),
                 ("golf, tanh.approx", mod.softcap_ce_sum, True), ("golf, exact tanh", mod.softcap_ce_sum, False)]
        for name, fn, fast in paths:
            if fast is not None:
                mod.FAST_TANH = fast
            total, per_kernel = kernel_us(step(fn))
            loss, gh, gw = step(fn)()
            print(f"| {name} | {total:.0f} | {golf_kernels(per_kernel)} | {rel_err(loss, truth[0]):.1e} | "
                  f"{rel_err(gh, truth[1]):.1e} / {rel_err(gw, truth[2]):.1e} |")


if __name__ == "__main__":
    main()
