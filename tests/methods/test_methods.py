"""The method registry: every method composes from conf/method/, validates, builds, and takes a real
optimisation step in the pretraining loop; each method's forward is its published formula."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from in_memory import InMemoryLoader
from pipeline.config import ParamsError, compose, validate_params
from pipeline.losses import build_loss, loss_hyperparameters
from pipeline.methods import METHOD_LOSSES
from pipeline.methods.registry import METHODS, build_method
from pipeline.train.distributed import DistInfo
from pipeline.train.loop import Pretrainer

CONF = Path(__file__).resolve().parents[2] / "conf"
SMALL = ["train.batch_size=12", "train.device=cpu", "model.projector_hidden=64", "model.projector_out=32",
         "model.predictor_hidden=64"]


def params_for(method: str, *extra: str):
    return validate_params(compose([f"method={method}", *SMALL, *extra]))


def loss_for(params):
    return build_loss(params.loss.name, **{k: getattr(params.loss, k) for k in loss_hyperparameters(params.loss.name)})


def views(batch=12, size=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, size, size, generator=gen), torch.randn(batch, 3, size, size, generator=gen)


def test_every_method_has_its_conf_file_and_declares_the_loss_the_catalog_names():
    assert set(METHODS) == set(METHOD_LOSSES)
    for name, cls in METHODS.items():
        assert cls.name == name and cls.loss == METHOD_LOSSES[name]
        assert (CONF / "method" / f"{name}.yaml").is_file()
        assert (CONF / "loss" / f"{cls.loss}.yaml").is_file()


@pytest.mark.parametrize("method", sorted(METHOD_LOSSES))
def test_method_switch_selects_its_loss_group(method):
    p = params_for(method)
    assert (p.method, p.loss.name) == (method, METHOD_LOSSES[method])


def test_the_default_is_the_papers_method_and_loss_k_still_reaches_it():
    p = validate_params(compose(["loss.k=3"]))
    assert (p.method, p.loss.name, p.loss.k, p.loss.k_end) == ("triplet", "truncated_triplet", 3, 10)
    assert validate_params(compose(["loss=median"])).loss.variant == "median"


def test_a_loss_switched_without_its_method_is_refused_naming_both():
    with pytest.raises(ParamsError, match=r"method = 'triplet' trains with loss.name = 'truncated_triplet'.*"
                                          r"loss.name = 'byol'.*use -S method=byol"):
        validate_params(compose(["loss=byol"]))


@pytest.mark.parametrize("method", ["simclr", "simsiam", "emp_ssl"])
def test_multi_crop_is_refused_for_methods_without_small_views(method):
    with pytest.raises(ParamsError, match=rf"train.local_views = 2: method '{method}' takes no small views"):
        params_for(method, "train.local_views=2")


@pytest.mark.parametrize("method", sorted(METHOD_LOSSES))
def test_forward_returns_a_finite_loss_named_parts_and_embeddings_for_the_diagnostic(method):
    torch.manual_seed(0)
    p = params_for(method)
    model = build_method(p)
    v1, v2 = views()
    loss, parts, (queries, keys) = model(v1, v2, loss_for(p))
    assert loss.dim() == 0 and math.isfinite(loss.item()) and loss.requires_grad
    assert parts and all(isinstance(k, str) and v.dim() == 0 and not v.requires_grad for k, v in parts.items())
    assert queries.shape == keys.shape and queries.shape[0] == 12
    assert not queries.requires_grad and not keys.requires_grad
    loss.backward()
    assert model.backbone.conv1.weight.grad is not None and model.backbone.conv1.weight.grad.abs().sum() > 0
    trainable = dict(model.online_parameters())
    assert "backbone.conv1.weight" in trainable
    assert not any(name.startswith("target_") for name in trainable)


def test_simclr_is_nt_xent_on_the_projections_of_both_views_in_one_batch():
    torch.manual_seed(0)
    p = params_for("simclr")
    model = build_method(p)
    assert not hasattr(model, "predictor") and not hasattr(model, "target_backbone")
    v1, v2 = views()
    loss, _, _ = model(v1, v2, loss_for(p))
    z = model.projector(model.backbone(torch.cat([v1, v2])))   # one pass: batch norm sees both views
    u = F.normalize(z, dim=1)
    logits = u @ u.T / p.loss.temperature
    logits.fill_diagonal_(float("-inf"))
    n = len(v1)
    expected = F.cross_entropy(logits, torch.cat([torch.arange(n) + n, torch.arange(n)]))
    torch.testing.assert_close(loss, expected)


def test_simsiam_is_the_symmetrised_negative_cosine_with_a_stop_gradient():
    torch.manual_seed(0)
    p = params_for("simsiam")
    model = build_method(p)
    assert not hasattr(model, "target_backbone")
    bottleneck = model.predictor[0].out_features
    assert bottleneck == p.model.projector_out // 4, "the predictor is a bottleneck (the paper's 2048 -> 512)"
    assert isinstance(model.projector[-1], torch.nn.BatchNorm1d), "BN on the projector's output"
    v1, v2 = views()
    loss, _, _ = model(v1, v2, loss_for(p))
    z1, z2 = model.projector(model.backbone(v1)), model.projector(model.backbone(v2))
    p1, p2 = model.predictor(z1), model.predictor(z2)
    d = lambda a, b: -F.cosine_similarity(a, b.detach(), dim=1).mean()  # noqa: E731
    torch.testing.assert_close(loss, 0.5 * (d(p1, z2) + d(p2, z1)))
    # The stop-gradient: the gradient is the literal one with z detached, not the one through both branches.
    weight = model.projector[0].weight
    g_method = torch.autograd.grad(loss, weight, retain_graph=True)[0]
    g_literal = torch.autograd.grad(0.5 * (d(p1, z2) + d(p2, z1)), weight, retain_graph=True)[0]
    no_stop = -0.5 * (F.cosine_similarity(p1, z2, dim=1).mean() + F.cosine_similarity(p2, z1, dim=1).mean())
    g_no_stop = torch.autograd.grad(no_stop, weight)[0]
    torch.testing.assert_close(g_method, g_literal)
    assert not torch.allclose(g_method, g_no_stop)


def test_only_the_siamese_methods_have_a_target_that_follows_the_online_network():
    torch.manual_seed(0)
    for method in METHOD_LOSSES:
        model = build_method(params_for(method))
        assert model.uses_target == hasattr(model, "target_backbone")
        with torch.no_grad():
            for _, param in model.online_parameters():
                param.add_(1.0)
        model.update_target(0.5)
        if model.uses_target:
            torch.testing.assert_close(model.target_backbone.conv1.weight,
                                       model.backbone.conv1.weight - 0.5)  # 0.5 * old + 0.5 * (old + 1)


def test_emp_ssl_is_the_coding_rate_loss_on_the_projections_of_all_patches_in_one_batch():
    torch.manual_seed(0)
    p = params_for("emp_ssl")
    model = build_method(p)
    assert not hasattr(model, "predictor") and not model.uses_target
    patches = [*views(seed=1), *views(seed=2)]  # 4 patches of 12 images
    loss, terms, (first, second) = model(patches[0], patches[1], loss_for(p), local=tuple(patches[2:]))
    z = model.projector(model.backbone(torch.cat(patches))).view(4, 12, -1)   # one pass: BN sees every patch
    u = F.normalize(z, dim=-1)
    dim = u.shape[-1]
    rate = torch.stack([0.5 * torch.logdet(torch.eye(dim) + dim / (12 * p.loss.eps) * zi.T @ zi) for zi in u]).mean()
    invariance = F.cosine_similarity(u, u.mean(0, keepdim=True), dim=-1).mean()
    torch.testing.assert_close(loss, -rate - p.loss.invariance_weight * invariance)
    assert set(terms) == {"coding_rate", "invariance"}
    torch.testing.assert_close(first, z[0])
    with pytest.raises(ValueError, match=r"emp_ssl: its patches share one size.*\(12, 3, 16, 16\)"):
        model(patches[0], patches[1], loss_for(p), local=(torch.randn(12, 3, 16, 16),))


def test_proto_is_swav_on_unit_prototypes_with_the_small_views_predicting_the_large_views_codes():
    from pipeline.losses.swav import sinkhorn

    torch.manual_seed(0)
    p = params_for("proto", "loss.prototypes=10")
    model = build_method(p)
    assert model.prototypes.weight.shape == (10, p.model.projector_out) and not model.uses_target
    with torch.no_grad():
        model.prototypes.weight.mul_(3.0)  # an optimiser step leaves them off the sphere: forward renormalises
    v1, v2 = views()
    small = tuple(torch.randn(12, 3, 16, 16, generator=torch.Generator().manual_seed(i)) for i in range(2))
    loss, _, _ = model(v1, v2, loss_for(p), local=small)
    torch.testing.assert_close(model.prototypes.weight.norm(dim=1), torch.ones(10))
    embed = lambda x: F.normalize(model.projector(model.backbone(x)), dim=1)  # noqa: E731
    z1, z2 = embed(torch.cat([v1, v2])).chunk(2)
    scores = [z @ model.prototypes.weight.T for z in (z1, z2, *embed(torch.cat(small)).chunk(2))]
    expected = 0.0
    for g in range(2):
        codes = sinkhorn(scores[g].detach(), p.loss.sinkhorn_eps, p.loss.sinkhorn_iterations)
        for v in range(4):
            if v != g:
                expected = expected - (codes * F.log_softmax(scores[v] / p.loss.temperature, dim=1)).sum(1).mean()
    torch.testing.assert_close(loss, expected / (2 * 3))


@pytest.mark.parametrize("method, extra", [("simclr", 0), ("simsiam", 0), ("emp_ssl", 2), ("proto", 2)])
def test_the_pretraining_loop_trains_a_method_without_a_target(method, extra, tmp_path):
    params = params_for(method, "train.epochs=1", "train.image_size=32")
    v1, v2 = views()
    more = tuple(torch.randn(12, 3, 32 if method == "emp_ssl" else 16, 32 if method == "emp_ssl" else 16)
                 for _ in range(extra))  # EMP-SSL's patches 3 and 4; multi-crop's small views for proto
    loader = InMemoryLoader([(v1, v2, torch.arange(12) % 3, more) if extra else (v1, v2, torch.arange(12) % 3)])
    trainer = Pretrainer(params, tmp_path, loader, DistInfo(), torch.device("cpu"))
    w0 = trainer.model.backbone.conv1.weight.detach().clone()
    state = trainer.fit()
    assert state.step == 1 and math.isfinite(state.history[-1]["loss"])
    assert 0.0 <= state.history[-1]["fn_hardest"] <= 1.0
    assert not torch.equal(trainer.model.backbone.conv1.weight, w0)
    exported = trainer.export()
    assert set(exported) == set(trainer.model.backbone.state_dict())


def test_loading_a_backbone_starts_the_target_from_it_too():
    torch.manual_seed(0)
    triplet, simclr = build_method(params_for("triplet")), build_method(params_for("simclr"))
    weights = simclr.export_backbone()
    triplet.load_backbone(weights)
    torch.testing.assert_close(triplet.backbone.conv1.weight, weights["conv1.weight"])
    torch.testing.assert_close(triplet.target_backbone.conv1.weight, weights["conv1.weight"])


def test_a_key_of_another_loss_is_refused_naming_the_loss_and_its_keys():
    raw = compose(["method=simclr"])
    raw["loss"]["k"] = 3  # a triplet key in NT-Xent's section
    with pytest.raises(ParamsError, match=r"loss.k: loss 'nt_xent' has no such key \(value 3\); it takes name, "
                                          r"temperature"):
        validate_params(raw)
    raw = compose([])
    del raw["loss"]["k_end"]
    with pytest.raises(ParamsError, match=r"loss.k_end: missing required key"):
        validate_params(raw)
    raw = compose([])
    raw["loss"]["name"] = "triplett"
    with pytest.raises(ParamsError, match=r"method = 'triplet' trains with loss.name = 'truncated_triplet', but "
                                          r"loss.name = 'triplett'"):
        validate_params(raw)  # a misspelt name meets the method's check first, which names what is expected


# Keys of a group that are the method's, not its loss's: who reads them.
METHOD_KEYS = {"truncated_triplet": {"gather_negatives"},                      # the loop, under DDP
               "coding_rate": {"patches", "patch_scale", "eval_patches"},      # the loaders
               "swav": {"prototypes"}}                                          # the model


@pytest.mark.parametrize("group", sorted(METHOD_LOSSES.values()))
def test_each_loss_group_holds_only_the_keys_its_loss_takes(group):
    from pipeline.config import read_yaml
    keys = set(read_yaml(CONF / "loss" / f"{group}.yaml")) - {"name"}
    assert keys == set(loss_hyperparameters(group)) | METHOD_KEYS.get(group, set())
