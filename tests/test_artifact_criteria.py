"""Per-criterion artifact latents of CRADLE-VAE (issue 19): the loss against a hand-written log-density,
each ``u_c`` acting only on the cells that failed its criterion, the single ``u`` as the one-criterion
case, every objective and ablation, and generation with chosen artifacts."""

from __future__ import annotations

import math

import pyro.poutine as poutine
import pytest
import torch

from cradlekit.module import CradleVAE, CradleVAEWithoutCausal, CradleVAEWithoutCF
from cradlekit.module.artifact_latents import pattern_table

G, T, DZ, B = 7, 2, 3, 10
CRITERIA = ("total_counts", "mito", "doublet")


def tiny_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """Ten cells: four passed, the others failing one or two of three criteria."""
    g = torch.Generator().manual_seed(seed)
    X = torch.poisson(torch.rand(B, G, generator=g) * 5 + 0.5)
    D = torch.zeros(B, T)
    D[torch.arange(B), torch.arange(B) % T] = 1.0
    D[::4] = 0.0
    flags = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0],
                          [1, 1, 0], [0, 1, 0], [0, 0, 0], [0, 1, 1], [0, 0, 0]], dtype=torch.float32)
    A = (flags.sum(1) > 0).float()
    # the counterfactual artifact of a passed cell: the criteria mix of its reference's failed cells
    A_cf = torch.where(A[:, None] == 0, torch.tensor([0.25, 0.5, 0.25]), torch.zeros(3))
    X_cf = torch.poisson(torch.rand(B, G, generator=g) * 5)
    return {"X": X, "D": D, "A": A, "A_criteria": flags, "A_cf": A_cf, "X_cf": X_cf, "cf_mask": A == 0}


def per_criterion(cls=CradleVAE, criteria=CRITERIA, **kw) -> CradleVAE:
    kw.setdefault("objective", "unweighted")
    torch.manual_seed(0)
    n_obs = (tiny_batch()["D"] != 0).sum(0)
    module = cls(G, T, n_obs, B, latent_dim=DZ, hidden_dim=8, num_particles=1, artifact_latent="per_criterion",
                 artifact_criteria=criteria, **kw)
    if module.causal:  # guides away from their initial N(0, I) so that every term is non-trivial
        with torch.no_grad():
            module.u_loc.normal_(0.0, 1.0)
            module.u_log_scale.uniform_(-1.0, 0.3)
    return module


def _normal_logpdf(x, loc, scale):
    return -0.5 * ((x - loc) / scale) ** 2 - torch.log(scale) - 0.5 * math.log(2 * math.pi)


def _nb_logpmf(x, mu, theta):
    return (torch.lgamma(x + theta) - torch.lgamma(theta) - torch.lgamma(x + 1)
            + theta * torch.log(theta / (theta + mu)) + x * torch.log(mu / (theta + mu)))


def _traces(module, batch, seed=1):
    torch.manual_seed(seed)
    guide_tr = poutine.trace(module.guide).get_trace(batch)
    model_tr = poutine.trace(poutine.replay(module.model, trace=guide_tr)).get_trace(batch)
    return model_tr, guide_tr


def test_loss_equals_a_hand_written_log_density():
    """-loss = mean_i [log NB(x_i | l_i rho_i, theta) - log q(z_b,i) + log p(z_b,i)] - sum_c [log q(u_c) -
    log p(u_c)] / N - KL(m, e), with z_a,i = sum_c a_i,c u_c assembled by hand (alpha = 0: no J2)."""
    batch = tiny_batch()
    module = per_criterion(alpha=0.0)
    model_tr, guide_tr = _traces(module, batch)
    loss, parts = module._loss_from_traces(batch, model_tr, guide_tr, 1, False)

    U = torch.stack([guide_tr.nodes[f"u_{c}"]["value"] for c in CRITERIA])  # (C, D)
    z_a = batch["A_criteria"] @ U  # by hand: the sum over the failed criteria
    m, e = guide_tr.nodes["m"]["value"], guide_tr.nodes["e"]["value"]
    z_p = batch["D"] @ (e * m)
    z_b = guide_tr.nodes["z_b"]["value"]
    with torch.no_grad():
        first = module.decoder.first
        weight = torch.cat([p.weight for p in first.parts], dim=1)
        pre = torch.cat([z_b, z_p, z_a], dim=-1) @ weight.T + first.parts[0].bias
        rho = module.decoder.frequencies_from_preactivation(pre)
        loc, scale = module.basal_encoder(module.normalize(batch["X"]), z_p, z_a)
        theta = torch.exp(module.decoder.log_theta)
        library = batch["X"].sum(1, keepdim=True)
        recon = _nb_logpmf(batch["X"], library * rho, theta).sum(1).mean()
        one = torch.ones(())
        kl_zb = (_normal_logpdf(z_b, loc, scale) - _normal_logpdf(z_b, 0 * one, one)).sum(1).mean()
        kl_u = {c: float((_normal_logpdf(U[i], module.u_loc[i], torch.exp(module.u_log_scale[i]))
                          - _normal_logpdf(U[i], 0 * one, one)).sum() / B) for i, c in enumerate(CRITERIA)}
    assert "u" not in guide_tr.nodes and {f"kl_u_{c}" for c in CRITERIA} <= set(parts)
    for c in CRITERIA:
        assert float(parts[f"kl_u_{c}"]) == pytest.approx(kl_u[c], rel=1e-5, abs=1e-6)
    hand = -(recon - kl_zb - sum(kl_u.values()) - parts["kl_m"] - parts["kl_e"])
    assert float(parts["reconstruction"]) == pytest.approx(float(recon), rel=1e-5)
    assert float(loss.detach()) == pytest.approx(float(hand), rel=1e-5)


def test_switching_one_criterion_changes_only_the_cells_that_failed_it():
    batch = tiny_batch()
    module = per_criterion()
    ctx = module._context(batch)
    g = torch.Generator().manual_seed(3)
    z_b, z_p = torch.randn(B, DZ, generator=g), torch.randn(B, DZ, generator=g)
    us = [torch.randn(DZ, generator=g) for _ in CRITERIA]
    design = batch["A_criteria"]
    with torch.no_grad():
        rho = module._decode(z_b, z_p, us, design)
        loc = module._encode(batch, ctx, z_p, us, design)[0]
        for c, name in enumerate(CRITERIA):
            moved = list(us)
            moved[c] = us[c] + 1.0
            failed = design[:, c] == 1
            changed = ~torch.isclose(module._decode(z_b, z_p, moved, design), rho).all(1)
            assert torch.equal(changed, failed), name
            changed = ~torch.isclose(module._encode(batch, ctx, z_p, moved, design)[0], loc).all(1)
            assert torch.equal(changed, failed), name


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("objective", ["published", "exact", "unweighted", "balanced"])
def test_one_criterion_is_the_papers_single_u(objective, causal):
    """A per-criterion model with one criterion flagged wherever a_i = 1 (and A_cf = 1 - a_i) is the single-u
    model: same weights, same draws, same loss, J2 included."""
    batch = tiny_batch()
    batch["A_criteria"], batch["A_cf"] = batch["A"][:, None], (1.0 - batch["A"])[:, None]
    n_obs = (batch["D"] != 0).sum(0)
    kw = dict(latent_dim=DZ, hidden_dim=8, num_particles=3, objective=objective, causal=causal)
    torch.manual_seed(0)
    single = CradleVAE(G, T, n_obs, B, **kw)
    one = CradleVAE(G, T, n_obs, B, artifact_latent="per_criterion", artifact_criteria=["any"], **kw)
    state = {k: (v.reshape(1, -1) if k in ("u_loc", "u_log_scale", "u") else v) for k, v in single.state_dict().items()}
    one.load_state_dict({**one.state_dict(), **state})
    torch.manual_seed(4)
    a = single.loss(batch)
    torch.manual_seed(4)
    b = one.loss(batch)
    torch.testing.assert_close(a[0], b[0])
    assert ("kl_u" in a[1]) == causal and ("kl_u_any" in b[1]) == causal
    torch.testing.assert_close(a[1]["j2"], b[1]["j2"])


@pytest.mark.parametrize("objective", ["published", "exact", "unweighted", "balanced"])
@pytest.mark.parametrize("cls", [CradleVAE, CradleVAEWithoutCF, CradleVAEWithoutCausal])
def test_every_objective_and_ablation_trains(cls, objective):
    batch = tiny_batch()
    module = per_criterion(cls, objective=objective)
    opt = torch.optim.Adam(module.parameters(), lr=1e-2)
    for _ in range(3):
        loss, parts = module.loss(batch, check_finite=True)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert ("j2" in parts) == (cls is not CradleVAEWithoutCF)
    assert all(f"kl_u_{c}" in parts for c in CRITERIA) == (cls is not CradleVAEWithoutCausal)
    if cls is CradleVAEWithoutCausal:  # fixed learnable vectors, one per criterion, no site
        assert module.u.shape == (len(CRITERIA), DZ) and module.u.grad is not None
    assert module.required_keys[-1] == ("A_criteria" if cls is CradleVAEWithoutCF else "A_cf")


def test_the_j2_counterfactual_switches_on_the_references_criteria_mix():
    batch = tiny_batch()
    module = per_criterion()
    _, guide_tr = _traces(module, batch)
    aux = guide_tr.nodes["_RETURN"]["value"]
    U = torch.stack([guide_tr.nodes[f"u_{c}"]["value"] for c in CRITERIA])
    z_p = batch["D"] @ (guide_tr.nodes["e"]["value"] * guide_tr.nodes["m"]["value"])
    with torch.no_grad():
        cf_loc, _ = module.basal_encoder(module.normalize(batch["X"]), z_p, batch["A_cf"] @ U)
        ref_loc, _ = module.basal_encoder(module.normalize(batch["X_cf"]), z_p, batch["A_cf"] @ U)
    torch.testing.assert_close(aux["cf_loc"], cf_loc, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(aux["ref_loc"], ref_loc, rtol=1e-5, atol=1e-5)


def test_generation_switches_on_the_chosen_criteria():
    module = per_criterion(artifact_patterns={"mito": 5, "doublet+mito": 0})
    with torch.no_grad():
        module.u_log_scale.fill_(-30.0)  # u_c = its mean: draws no longer matter
    rows = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    off = module.predict_mean(rows, 20, seed=0)
    torch.testing.assert_close(module.predict_mean(rows, 20, seed=0, artifact=[]), off, rtol=0, atol=0)
    mito = module.predict_mean(rows, 20, seed=0, artifact=["mito"])
    assert not torch.allclose(mito, off)
    assert not torch.allclose(module.predict_mean(rows, 20, seed=0, artifact=["mito", "doublet"]), mito)
    # artifact=True draws failure patterns with the training frequencies: here always "mito"
    torch.testing.assert_close(module.predict_mean(rows, 20, seed=0, artifact=True), mito, rtol=1e-5, atol=1e-3)
    with pytest.raises(ValueError, match="no artifact latent for"):
        module.predict_mean(rows, 2, artifact=["hb"])
    single = CradleVAE(G, T, torch.ones(T), B, latent_dim=DZ, hidden_dim=8)
    with pytest.raises(ValueError, match="one artifact latent"):
        single.predict_mean(rows, 2, artifact=["mito"])


def test_pattern_table_and_option_checks():
    design, weight = pattern_table(CRITERIA, {"mito": 3, "doublet+total_counts": 1})
    assert design.tolist() == [[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]] and weight.tolist() == [3.0, 1.0]
    assert pattern_table(CRITERIA, None)[0].tolist() == torch.eye(3).tolist()
    with pytest.raises(ValueError, match="without a latent"):
        pattern_table(CRITERIA, {"hb": 1})
    with pytest.raises(ValueError, match="needs artifact_criteria"):
        CradleVAE(G, T, torch.ones(T), B, artifact_latent="per_criterion")
    with pytest.raises(ValueError, match="artifact_latent must be"):
        CradleVAE(G, T, torch.ones(T), B, artifact_latent="per_cell")
    with pytest.raises(ValueError, match="only"):
        CradleVAE(G, T, torch.ones(T), B, artifact_criteria=["mito"])
