"""golf/train/inductor.py: the cap on buffers read by one mix-order reduction kernel (torch 2.11)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import sympy
import torch
from torch._inductor.dependencies import MemoryDep, StarDep

from golf.train.inductor import MAX_READS, cap_mix_order_reads, cap_rule, reads
from golf.train.inductor_code import kernel_bytes, mix_order_kernels


class Node:
    """A scheduler node as the cap sees one: its own reads, and itself as its only sub-node."""

    def __init__(self, *names: str, star: tuple[str, ...] = ()):
        deps = {MemoryDep(n, sympy.Integer(0), (), ()) for n in names} | {StarDep(n) for n in star}
        self.read_writes = SimpleNamespace(reads=deps)

    def get_nodes(self):
        return [self]


class Fused:
    """A fused node: the reads of its sub-nodes."""

    def __init__(self, *nodes: Node):
        self.nodes = nodes

    def get_nodes(self):
        return list(self.nodes)


def test_reads_counts_distinct_buffers_across_fused_nodes_and_skips_whole_buffer_deps():
    a, b = Node("x", "w0", "g"), Node("x", "w1", star=("y",))
    assert reads(a) == 3
    assert reads(Fused(a, b), Node("w1", "w2")) == 5  # x, w0, g, w1, w2; the StarDep on y is not a load


class Rules:
    """Fusion rules shaped like inductor's: one called on the class, one on an instance."""

    calls: list = []

    @classmethod
    def can_fuse(cls, a, b):
        cls.calls.append((a, b))
        return True

    def can_fuse_with(self, other):
        Rules.calls.append((self, other))
        return True


def test_a_capped_rule_refuses_over_the_cap_and_asks_the_rule_first():
    cap_rule(Rules, "can_fuse", 4, static=True)
    cap_rule(Rules, "can_fuse_with", 4, static=False)
    a, small, big = Fused(Node("a", "b", "c")), Node("c", "d"), Node("d", "e")
    assert Rules.can_fuse(a, small)  # 4 buffers: the rule's answer
    assert not Rules.can_fuse(a, big)  # 5
    inst = Rules()
    inst.get_nodes = a.get_nodes
    assert inst.can_fuse_with(small) and not inst.can_fuse_with(big)
    assert len(Rules.calls) == 4  # the rule decided each time before the count was taken
    cap_rule(Rules, "can_fuse", 100, static=True)  # capping again keeps the first cap
    assert Rules.can_fuse.golf_max_reads == 4 and not Rules.can_fuse(a, big)


def test_on_this_torch_both_mix_order_decisions_are_capped():
    from torch._inductor import scheduler

    how = cap_mix_order_reads()
    if not hasattr(scheduler, "MixOrderReduction"):
        assert how == "none"
        return
    assert how == "capped"
    assert scheduler.MixOrderReduction.can_fuse.golf_max_reads == MAX_READS
    assert scheduler.FusedMixOrderReductions.can_fuse_with.golf_max_reads == MAX_READS
    assert cap_mix_order_reads(0) == "off"


KERNELS = """
@triton_heuristics.persistent_reduction(
    inductor_meta={'grid_type': 'MixOrderReductionGrid', 'kernel_name': 'k1'},
)
@triton.jit
def triton_per_mix_k1(in_ptr0, in_ptr1, in_out_ptr0, ws_ptr, xnumel):
    accum0 = tl.full([R0_BLOCK], 0, tl.float32)[None, :]
    accum1 = tl.full([R0_BLOCK], 0, tl.float32)[None, :]
    for _ in tl.range(0, split_size, XBLOCK):
        tmp0 = tl.load(in_ptr0 + (r0_1 + 512*x0), None)
        tmp1 = tl.load(in_ptr1 + (x0), None)
        tmp2 = tl.load(in_out_ptr0 + (r0_1 + 512*x0), None)
        tmp3 = tl.load(in_ptr0 + (512 + r0_1), None)
@triton_heuristics.reduction(
    inductor_meta={'grid_type': 'Grid1D', 'kernel_name': 'k2'},
)
@triton.jit
def triton_red_k2(in_ptr0, out_ptr0, xnumel):
    tmp0 = tl.load(in_ptr0 + (x0), None)
"""


def test_mix_order_kernels_reads_pointers_and_column_sums_of_mix_order_kernels_only():
    assert mix_order_kernels(KERNELS) == {"triton_per_mix_k1": (3, 2)}
    assert mix_order_kernels(KERNELS + KERNELS) == {"triton_per_mix_k1": (3, 2)}  # its file and the graph's


SIZED = """
@triton_heuristics.pointwise(
    triton_meta={'signature': {'in_ptr0': '*bf16', 'in_ptr1': '*fp32', 'out_ptr0': '*bf16', 'xnumel': 'i32'}},
)
@triton.jit
def triton_poi_rows(in_ptr0, in_ptr1, out_ptr0, xnumel, XBLOCK : tl.constexpr):
    xnumel = 4096
    x2 = xindex
    x0 = (xindex % 512)
    x1 = xindex // 512
    tmp0 = tl.load(in_ptr0 + (x2), None).to(tl.float32)
    tmp1 = tl.load(in_ptr1 + (x1), None, eviction_policy='evict_last')
    tmp2 = tl.load(in_ptr0 + (x2), None).to(tl.float32)
    tl.store(out_ptr0 + (x0 + 512*x1), tmp0, None)
@triton_heuristics.persistent_reduction(
    triton_meta={'signature': {'in_ptr0': '*bf16', 'in_ptr1': '*fp32', 'out_ptr0': '*fp32', 'xnumel': 'i32'}},
)
@triton.jit
def triton_per_norm(in_ptr0, in_ptr1, out_ptr0, xnumel, r0_numel, XBLOCK : tl.constexpr):
    xnumel = 8
    r0_numel = 512
    x0 = xindex
    r0_1 = r0_index
    tmp0 = tl.load(in_ptr0 + (r0_1 + 512*x0), None)
    tmp1 = tl.load(in_ptr1 + (r0_1), None)
    tmp9 = tl.load(in_ptr1 + (0))
    tl.store(out_ptr0 + (x0), tmp0, None)
@triton_heuristics.pointwise(
    triton_meta={'signature': {'in_ptr0': '*bf16', 'xnumel': 'i32'}},
)
@triton.jit
def triton_poi_dynamic(in_ptr0, xnumel, XBLOCK : tl.constexpr):
    x0 = xindex
    tmp0 = tl.load(in_ptr0 + (x0), xmask)
"""


def test_kernel_bytes_counts_each_access_over_the_values_its_index_takes():
    """A row value indexed by xindex // 512 counts rows, not elements; one (pointer, index) pair counts
    once; a vector over r0 counts r0_numel; a scalar load nothing; a kernel with dynamic sizes is left out."""
    assert kernel_bytes(SIZED) == {
        "triton_poi_rows": 4096 * 2 + (4096 // 512) * 4 + 4096 * 2,
        "triton_per_norm": 8 * 512 * 2 + 512 * 4 + 8 * 4,
    }


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="mix-order reductions are Triton (CUDA) kernels")
def test_gpu_the_looped_record_model_over_fuses_without_the_cap_and_not_with_it(tmp_path, monkeypatch):
    """golf's h100 model, looped, its loss and backward compiled as training compiles them (16,384
    tokens; SDPA without document masking, so no FA4 is needed: the norms, skips and lanes whose
    gradients made the over-fused kernels are the same)."""
    import dataclasses
    from pathlib import Path

    from torch._inductor import scheduler
    from torch._inductor.utils import run_and_get_code

    from golf.artifact.model import GPT, ModelConfig
    from golf.params import load_section
    from golf.presets import preset_params

    params = preset_params("h100", Path(__file__).resolve().parents[1], tmp_path / "params.yaml")
    cfg = dataclasses.replace(load_section(params, "model", ModelConfig), doc_masked_attention=False)
    torch.manual_seed(0)
    model = GPT(cfg).cuda()
    model.looping = model.autocast_residual = True
    idx, tgt = (torch.randint(0, cfg.vocab_size, (8, 2048), device="cuda") for _ in range(2))

    def compiled_kernels() -> list[int]:  # buffers read by each mix-order kernel
        torch._dynamo.reset()
        loss_fn = torch.compile(model.train_loss, dynamic=False)

        def step():
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = loss_fn(idx, tgt)[0]
            loss.backward()

        with torch._inductor.config.patch(force_disable_caches=True):
            return [n for n, _ in mix_order_kernels("\n".join(run_and_get_code(step)[1])).values()]

    cap_mix_order_reads()
    capped = compiled_kernels()
    make, grow = scheduler.MixOrderReduction, scheduler.FusedMixOrderReductions
    monkeypatch.setattr(make, "can_fuse", staticmethod(make.can_fuse.golf_original))
    monkeypatch.setattr(grow, "can_fuse_with", grow.can_fuse_with.golf_original)
    uncapped = compiled_kernels()
    assert capped and uncapped, "no mix-order reduction kernel was generated: the test shows nothing"
    assert max(capped) <= MAX_READS < max(uncapped), (sorted(capped), sorted(uncapped))
