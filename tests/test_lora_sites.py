"""ttt_eval.lora_sites: only the chosen adapter-site kinds get a LoRA; the default is every kind."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from test_leakage import SEQ, streams, ttt_cfg
from toy_model import ToyLM

from golf.artifact.scoring import Totals
from golf.artifact.typed import build_section
from golf.errors import GolfError
from golf.eval import lora_ttt
from golf.eval.config import LORA_SITE_KINDS, TttEvalConfig
from golf.params import load_section

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
SMALL = dict(seq_len=SEQ, chunk_size=4, batch_docs=3, lora_rank=3, lora_alpha=6.0, lora_lr=0.05, phased_prefix_docs=0,
             phased_num_phases=0, batch_seqs=2, seed=0)


class RecordingLM(ToyLM):
    """ToyLM that notes, for each adapter call, the site's kind and whether a delta came back."""

    calls: list[tuple[str, bool]] = []  # class-level: shared with the deep copy evaluate makes

    def forward(self, idx, adapter=None):
        if adapter is None:
            return super().forward(idx)

        def noting(site, x):
            delta = adapter(site, x)
            RecordingLM.calls.append((lora_ttt.site_kind(site), delta is not None))
            return delta

        return super().forward(idx, noting)


def run(model, tokens, vb, sites):
    tot = Totals(vb, len(tokens), keep_tokens=True)
    _, details = lora_ttt.evaluate(model, tokens, vb, ttt_cfg(**SMALL, lora_sites=sites), bos_id=0, device="cpu",
                                   totals=tot)
    return tot.token_nll, details


@pytest.mark.parametrize("sites, words", [
    (("attn.c_q", "attn.q"), ["ttt_eval.lora_sites = ['attn.c_q', 'attn.q']", "unknown kind 'attn.q'", "attn.proj"]),
    ((), ["ttt_eval.lora_sites = []", "empty", "ttt_mode none"]),
])
def test_config_refuses_unknown_or_no_sites(sites, words):
    values = dataclasses.asdict(load_section(PARAMS, "ttt_eval", TttEvalConfig))
    with pytest.raises(GolfError) as e:
        build_section({**values, "lora_sites": list(sites)}, "ttt_eval", TttEvalConfig)
    for w in words:
        assert w in str(e.value)


def test_the_default_is_every_site_the_gpt_calls(tiny_model_config):
    from golf.artifact.model.gpt import GPT

    assert load_section(PARAMS, "ttt_eval", TttEvalConfig).lora_sites == LORA_SITE_KINDS
    model = GPT(tiny_model_config)
    model.looping = True
    dims = lora_ttt.adapter_dims(model)
    assert {lora_ttt.site_kind(s) for s in dims} == set(LORA_SITE_KINDS)
    assert lora_ttt.chosen_sites(dims, LORA_SITE_KINDS) == dims
    assert list(lora_ttt.chosen_sites(dims, ("head", "mlp"))) == [s for s in dims if s == "head" or s.endswith(".mlp")]


def test_lora_parameters_match_the_formula_for_the_chosen_sites(tiny_model_config):
    from golf.artifact.model.gpt import GPT

    cfg = tiny_model_config
    model = GPT(cfg)
    model.looping = True
    rng = np.random.default_rng(0)
    tok = rng.integers(2, cfg.vocab_size, size=60).astype(np.uint16)
    tok[[0, 25]] = 1
    vb = np.where(tok == 1, 0, 2).astype(np.uint16)
    sites = ("attn.c_k", "mlp", "head")
    over = dict(seq_len=24, chunk_size=6, batch_docs=2, lora_rank=3, phased_prefix_docs=0, phased_num_phases=0)
    _, det = lora_ttt.evaluate(model, tok, vb, ttt_cfg(**over, lora_sites=sites), bos_id=1, device="cpu")
    d, kv = cfg.model_dim, cfg.num_kv_heads * (cfg.model_dim // cfg.num_heads)
    per_doc = model.num_virtual_layers * ((d + kv) + (d + d)) + (d + cfg.vocab_size)  # A: r x in, B: out x r
    assert det["lora_params"] == 2 * 3 * per_doc


def test_only_the_chosen_sites_get_a_delta():
    tokens, _, vb = streams(60)
    for sites in (("attn.c_v", "head"), ("mlp",), LORA_SITE_KINDS):
        RecordingLM.calls.clear()
        run(RecordingLM(seed=11), tokens, vb, sites)
        assert {kind for kind, got in RecordingLM.calls if got} == set(sites)
        assert {kind for kind, _ in RecordingLM.calls} == set(LORA_SITE_KINDS)  # the rest still called, no delta


@pytest.mark.parametrize("sites", [("attn.c_v", "head"), ("mlp",)])
@pytest.mark.parametrize("p", [37, 90])
def test_future_tokens_never_change_earlier_scores_with_fewer_sites(sites, p):
    a, b, vb = streams(p)
    na, _ = run(ToyLM(seed=11), a, vb, sites)
    nb, _ = run(ToyLM(seed=11), b, vb, sites)
    np.testing.assert_allclose(na[1: p + 1], nb[1: p + 1], rtol=0, atol=1e-9)
    assert not np.allclose(na[p + 1:], nb[p + 1:])


def test_fewer_sites_still_adapt_and_differ_from_all_sites():
    tokens, _, vb = streams(50)
    frozen = Totals(vb, len(tokens), keep_tokens=True)
    lora_ttt.evaluate(ToyLM(seed=11), tokens, vb, ttt_cfg(**{**SMALL, "lora_lr": 0.0}), bos_id=0, device="cpu",
                      totals=frozen)  # B stays 0: the frozen model's scores
    head, _ = run(ToyLM(seed=11), tokens, vb, ("head",))
    every, _ = run(ToyLM(seed=11), tokens, vb, LORA_SITE_KINDS)
    assert not np.allclose(head[40:], frozen.token_nll[40:]) and not np.allclose(head[40:], every[40:])
