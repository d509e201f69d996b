"""Hessian collection: the right XᵀX per weight, hooks always removed, model untouched; samplers."""

import numpy as np
import pytest
import torch
from torch import nn

from golf.errors import GolfError
from golf.quant import hessian


class Toy(nn.Module):
    """q and k share one input tensor (as c_q/c_k/c_v do); the embedding's H is the norm's output."""

    def __init__(self, vocab: int = 19, d: int = 6, hidden: int = 10):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.tok_emb = nn.Embedding(vocab, d)
        self.q, self.k = nn.Linear(d, d, bias=False), nn.Linear(d, d, bias=False)
        self.fc, self.proj = nn.Linear(d, hidden, bias=False), nn.Linear(hidden, d, bias=False)
        self.norm = nn.LayerNorm(d)
        for p in self.parameters():
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def parts(self, idx):
        x = self.tok_emb(idx)
        h = x + self.q(x) * torch.sigmoid(self.k(x))
        a = torch.relu(self.fc(h))
        y = self.norm(h + self.proj(a))
        return x, h, a, y

    def forward(self, idx):
        return self.parts(idx)[3] @ self.tok_emb.weight.T

    def hessian_sites(self):
        return {"q.weight": (self.q, "input"), "k.weight": (self.k, "input"), "fc.weight": (self.fc, "input"),
                "proj.weight": (self.proj, "input"), "tok_emb.weight": (self.norm, "output")}


def batches(n: int = 3, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 19, (2, 7), generator=g) for _ in range(n)]


def xtx(x):
    x = x.reshape(-1, x.shape[-1])
    return x.T @ x


def test_hessians_equal_mean_xtx_per_batch():
    model = Toy()
    bs = batches()
    H, tokens = hessian.collect_hessians(model, bs)
    assert tokens == 3 * 2 * 7
    want = {n: 0 for n in model.hessian_sites()}
    with torch.no_grad():
        for b in bs:
            x, h, a, y = model.parts(b)
            for n, t in [("q.weight", x), ("k.weight", x), ("fc.weight", h), ("proj.weight", a), ("tok_emb.weight", y)]:
                want[n] = want[n] + xtx(t) / len(bs)
    assert set(H) == set(want)
    for n in want:
        assert H[n].dtype == torch.float32 and H[n].shape == want[n].shape
        assert torch.allclose(H[n], want[n], rtol=1e-5, atol=1e-5), n
    assert H["fc.weight"].shape == (6, 6) and H["proj.weight"].shape == (10, 10)


def test_hooks_leave_model_unchanged():
    model = Toy().train()
    idx = batches(1, seed=9)[0]
    before = model(idx).detach().clone()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    hessian.collect_hessians(model, batches())
    assert model.training
    assert all(not m._forward_hooks for m in model.modules())
    assert torch.equal(model(idx), before)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_hooks_removed_after_an_exception_mid_batch():
    model = Toy()

    def bad_batches():
        yield batches(1)[0]
        yield torch.full((2, 7), 999)  # out of the vocabulary: the embedding raises mid-forward

    with pytest.raises(IndexError):
        hessian.collect_hessians(model, bad_batches())
    assert all(not m._forward_hooks for m in model.modules())


def test_real_gpt_sites_all_collected(tiny_model_config):
    from golf.artifact.model.gpt import GPT

    torch.manual_seed(0)
    model = hessian.prepare_eval(GPT(tiny_model_config))
    assert model.looping  # num_loops > 0: calibrate in the looped graph eval runs
    g = torch.Generator().manual_seed(2)
    bs = [torch.randint(0, tiny_model_config.vocab_size, (2, 9), generator=g) for _ in range(2)]
    H, _ = hessian.collect_hessians(model, bs)
    sd = model.state_dict()
    hessian.check_hessians(H, sd, model.hessian_sites())
    assert "tok_emb.weight" in H
    assert all(not m._forward_hooks for m in model.modules())


def test_train_batches_seeded_and_in_range():
    tokens = np.arange(500, dtype=np.uint16)
    a = list(hessian.train_batches(tokens, 3, 4, 16, seed=5, device=torch.device("cpu")))
    b = list(hessian.train_batches(tokens, 3, 4, 16, seed=5, device=torch.device("cpu")))
    c = list(hessian.train_batches(tokens, 3, 4, 16, seed=6, device=torch.device("cpu")))
    assert len(a) == 3 and a[0].shape == (4, 16) and a[0].dtype == torch.long
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    assert all(((x[:, 1:] - x[:, :-1]) == 1).all() for x in a)  # contiguous windows
    with pytest.raises(GolfError, match="fewer"):
        list(hessian.train_batches(tokens[:10], 1, 1, 16, seed=0, device=torch.device("cpu")))


def test_self_generated_batches_seeded():
    model = Toy()

    def gen(seed):
        return list(hessian.self_generated_batches(model, 2, 3, 8, 0.8, seed, 1, torch.device("cpu")))

    a, b = gen(4), gen(4)
    assert len(a) == 2 and a[0].shape == (3, 8)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert (a[0][:, 0] == 1).all() and int(max(x.max() for x in a)) < 19


def test_mismatched_hessians_name_the_tensor():
    model = Toy()
    sd = model.state_dict()
    H, _ = hessian.collect_hessians(model, batches(1))
    names = list(model.hessian_sites())
    with pytest.raises(GolfError, match="fc.weight"):
        hessian.check_hessians({k: v for k, v in H.items() if k != "fc.weight"}, sd, names)
    with pytest.raises(GolfError, match=r"proj.weight.*\(7, 7\)"):
        hessian.check_hessians({**H, "proj.weight": torch.eye(7)}, sd, names)
    with pytest.raises(GolfError, match="blocks.9.mlp.fc.weight"):
        hessian.check_hessians({**H, "blocks.9.mlp.fc.weight": torch.eye(6)}, sd, names)
    with pytest.raises(GolfError, match="nope.weight"):
        hessian.check_hessians(H, sd, names + ["nope.weight"])


def test_hessian_sums_stay_fp32_under_autocast():
    """The forward may run under bf16 autocast; XᵀX must not (a bf16 matmul would round the sums)."""
    lin = torch.nn.Linear(8, 4, bias=False)
    x = torch.randn(2, 16, 8, dtype=torch.float32) * 3 + 1

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = lin

        def forward(self, idx):
            return self.lin(x)

    with torch.autocast("cpu", dtype=torch.bfloat16):
        H, _ = hessian.collect_hessians(Net(), [torch.zeros(1)], sites={"lin.weight": (lin, "input")})
    xf = x.reshape(-1, 8)
    assert H["lin.weight"].dtype == torch.float32
    torch.testing.assert_close(H["lin.weight"], xf.T @ xf, rtol=1e-6, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gram_under_cuda_bf16_autocast_is_bf16_x_summed_in_fp32():
    """On CUDA under bf16 autocast H is built from bf16(X), the operand the Linear multiplies."""
    x = torch.randn(8192, 64, device="cuda") * 3 + 1
    with torch.autocast("cuda", dtype=torch.bfloat16):
        h = hessian.gram(x)
    xb = x.to(torch.bfloat16).double()
    assert h.dtype == torch.float32
    torch.testing.assert_close(h.double(), xb.T @ xb, rtol=1e-5, atol=1e-2)
