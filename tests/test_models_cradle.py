"""CRADLE-VAE's Pyro structure, minibatch scaling, J2 and ablations."""

from __future__ import annotations

import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import Trace_ELBO

from cradlekit.module import CradleVAE, CradleVAEWithoutCausal, CradleVAEWithoutCF, SamsVAE
from cradlekit.module.distributions import GumbelSoftmaxBernoulli

G, T, DZ = 20, 3, 5


def batch_of(n: int = 48, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.poisson(torch.rand(n, G, generator=g) * 6)
    D = torch.zeros(n, T)
    D[torch.arange(n), torch.arange(n) % T] = 1.0
    D[::8] = 0.0  # controls
    D[1::8, 0] = 1.0  # some combinations (t, 0)
    A = (torch.rand(n, generator=g) < 0.3).float()
    X_cf = torch.poisson(torch.rand(n, G, generator=g) * 6)
    return {"X": X, "D": D, "A": A, "X_cf": X_cf, "cf_mask": A == 0}


def cradle(batch, cls=CradleVAE, **kw):
    """A small CRADLE-VAE; ``objective=None`` unless given: these tests check each ingredient alone."""
    kw.setdefault("objective", None)
    torch.manual_seed(0)
    n_obs = (batch["D"] != 0).sum(0)
    return cls(G, T, n_obs, batch["X"].shape[0], latent_dim=DZ, hidden_dim=16, **kw)


def test_trace_has_expected_sites_and_plates():
    batch = batch_of()
    model = cradle(batch)
    model_tr, guide_tr = model.traces(batch, num_particles=3)
    latent = {n for n, s in guide_tr.nodes.items() if s["type"] == "sample" and n not in ("cells", "perturbations")}
    assert latent == {"m", "e", "u", "z_b"}
    assert model_tr.nodes["x"]["is_observed"]

    def plates(tr, name):
        return {f.name for f in tr.nodes[name]["cond_indep_stack"]}

    for tr in (model_tr, guide_tr):
        assert plates(tr, "m") == plates(tr, "e") == {"perturbations", "num_particles_vectorized"}
        assert plates(tr, "z_b") == {"cells", "num_particles_vectorized"}
        assert plates(tr, "u") == {"num_particles_vectorized"}
    assert plates(model_tr, "x") == {"cells", "num_particles_vectorized"}
    assert guide_tr.nodes["m"]["value"].shape == (3, T, DZ)
    assert guide_tr.nodes["u"]["value"].shape == (3, 1, DZ)
    assert guide_tr.nodes["z_b"]["value"].shape == (3, 48, DZ)
    m = guide_tr.nodes["m"]["value"]
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    # the particle plate expands q(m) without losing the Bernoulli scoring of hard samples
    assert isinstance(guide_tr.nodes["m"]["fn"].base_dist, GumbelSoftmaxBernoulli)


def test_without_causal_has_no_u_site_and_without_cf_no_j2():
    batch = batch_of()
    wo_causal = cradle(batch, CradleVAEWithoutCausal)
    _, guide_tr = wo_causal.traces(batch)
    assert "u" not in guide_tr.nodes and "kl_u" not in wo_causal.loss(batch)[1]
    assert "u" in dict(wo_causal.named_parameters())
    assert "j2" in wo_causal.loss(batch)[1]

    wo_cf = cradle(batch, CradleVAEWithoutCF)
    assert wo_cf.alpha == 0.0
    _, guide_tr = wo_cf.traces(batch)
    assert guide_tr.nodes["_RETURN"]["value"] is None  # no counterfactual encodings computed
    parts = wo_cf.loss(batch)[1]
    assert "j2" not in parts and "kl_u" in parts
    assert float(parts["loss"]) == pytest.approx(-float(parts["elbo"]))


def test_loss_matches_pyro_trace_elbo():
    batch = batch_of()
    model = cradle(batch, CradleVAEWithoutCF)
    for particles in (1, 4):
        pyro.set_rng_seed(5)
        ours = model.loss(batch, num_particles=particles)[0]
        pyro.set_rng_seed(5)
        elbo = Trace_ELBO(num_particles=particles, vectorize_particles=True, max_plate_nesting=1)
        ref = elbo.differentiable_loss(model.model, model.guide, batch)
        torch.testing.assert_close(ours, ref)


def _elbo_with_values(module, batch, values):
    """ELBO of ``batch`` with latent values fixed: replay the guide, then the model."""
    tr = poutine.Trace()
    for name, value in values.items():
        tr.add_node(name, type="sample", is_observed=False, value=value, infer={})
    guide_tr = poutine.trace(poutine.replay(module.guide, trace=tr)).get_trace(batch)
    model_tr = poutine.trace(poutine.replay(module.model, trace=guide_tr)).get_trace(batch)
    return model_tr.log_prob_sum() - guide_tr.log_prob_sum(), model_tr, guide_tr


def _unscaled_elbo(model_tr, guide_tr):
    """Sum of log p - log q over all sites without any scale or mask: the full-data ELBO."""

    def total(tr):
        return sum(
            s["fn"].log_prob(s["value"]).sum()
            for n, s in tr.nodes.items()
            if s["type"] == "sample" and n not in ("cells", "perturbations")
        )

    return total(model_tr) - total(guide_tr)


@pytest.mark.parametrize("cls", [CradleVAE, SamsVAE])
def test_minibatch_losses_average_to_full_data_loss(cls):
    """Minibatch ELBOs estimate the full-data ELBO per cell, with SAMS-VAE's plated weights.

    Latent values are held fixed (one particle): the globals from one guide draw, each cell's
    z_b its own. Checks: (1) the full-batch ELBO is the unscaled full-data ELBO divided by N;
    (2) over a partition into equal batches the mean batch ELBO equals it exactly; (3) in each
    batch the perturbation-plated sites weigh c_t / (n_t B) and u weighs 1 / N. A missing
    rescaling of the global KLs (weight 1, or 1/B, per batch) fails (1)-(2); plain 1/N weights
    for the perturbation latents fail (3).
    """
    N = 48
    full = batch_of(n=N, seed=2)
    n_obs = (full["D"] != 0).sum(0)
    plain = {"objective": None} if issubclass(cls, CradleVAE) else {}  # the scaling, without class balancing
    module = cls(G, T, n_obs, N, latent_dim=DZ, hidden_dim=16, **plain)
    torch.manual_seed(0)
    full_tr = poutine.trace(module.guide).get_trace(full)
    globals_ = [n for n in ("m", "e", "u") if n in full_tr.nodes]
    values = {n: full_tr.nodes[n]["value"] for n in globals_}
    z_b = full_tr.nodes["z_b"]["value"]
    elbo_full, model_tr, guide_tr = _elbo_with_values(module, full, {**values, "z_b": z_b})
    hand = _unscaled_elbo(model_tr, guide_tr) / N
    torch.testing.assert_close(elbo_full, hand, rtol=1e-5, atol=1e-5)

    def global_sum(tr):
        return sum(tr.nodes[n]["fn"].log_prob(tr.nodes[n]["value"]).sum() for n in globals_)

    global_term = global_sum(model_tr) - global_sum(guide_tr)
    assert abs(float(global_term.detach())) / N > 1e-3  # large against the tolerance below

    perm = torch.randperm(N, generator=torch.Generator().manual_seed(1))
    batch_elbos = []
    for idx in perm.view(4, 12):
        part = {k: v[idx] for k, v in full.items()}
        elbo, m_tr, g_tr = _elbo_with_values(module, part, {**values, "z_b": z_b[idx]})
        batch_elbos.append(elbo)
        count = (part["D"] != 0).sum(0).float()
        for tr in (m_tr, g_tr):
            site = tr.nodes["e"]
            torch.testing.assert_close(
                torch.where(site["mask"], site["scale"], torch.zeros(())), count / (n_obs * 12)
            )
            if "u" in tr.nodes:
                assert float(tr.nodes["u"]["scale"]) == pytest.approx(1 / N)
            assert float(tr.nodes["z_b"]["scale"]) == pytest.approx(1 / 12)
    torch.testing.assert_close(torch.stack(batch_elbos).mean(), hand, rtol=1e-5, atol=1e-5)


def test_j2_masked_cells_contribute_nothing():
    batch = batch_of()
    model = cradle(batch)
    torch.manual_seed(1)
    j2 = model.loss(batch)[1]["j2"]
    assert float(j2) > 0
    changed = dict(batch)
    changed["X_cf"] = batch["X_cf"].clone()
    changed["X_cf"][~batch["cf_mask"]] = 1000.0
    torch.manual_seed(1)
    assert float(model.loss(changed)[1]["j2"]) == pytest.approx(float(j2), rel=1e-6)
    torch.manual_seed(1)
    none = {**batch, "cf_mask": torch.zeros_like(batch["cf_mask"])}
    assert float(model.loss(none)[1]["j2"]) == 0.0


def test_j2_matches_guide_encodings_and_published_scales_with_batch():
    batch = batch_of()
    exact = cradle(batch, alpha=0.5)
    torch.manual_seed(2)
    _, guide_tr = exact.traces(batch)
    out = guide_tr.nodes["_RETURN"]["value"]
    # the three encodings (5 particles) equal the encoder evaluated on its own, value by value:
    # factual [x, z_p, a u], counterfactual [x, z_p, (1 - a) u], reference [x_cf, z_p, (1 - a) u]
    m, e, u = (guide_tr.nodes[n]["value"] for n in ("m", "e", "u"))
    z_p, a = batch["D"] @ (e * m), batch["A"][:, None]
    x, x_cf = exact.normalize(batch["X"]), exact.normalize(batch["X_cf"])
    with torch.no_grad():
        factual = exact.basal_encoder(x, z_p, a * u)
        counterfactual = exact.basal_encoder(x, z_p, (1 - a) * u)
        reference = exact.basal_encoder(x_cf, z_p, (1 - a) * u)
    q_z_b = guide_tr.nodes["z_b"]["fn"].base_dist
    assert q_z_b.loc.shape == (5, 48, DZ)
    torch.testing.assert_close(q_z_b.loc.detach(), factual[0])
    torch.testing.assert_close(q_z_b.scale.detach(), factual[1])
    torch.testing.assert_close(out["cf_loc"].detach(), counterfactual[0])
    torch.testing.assert_close(out["cf_scale"].detach(), counterfactual[1])
    torch.testing.assert_close(out["ref_loc"].detach(), reference[0])
    torch.testing.assert_close(out["ref_scale"].detach(), reference[1])
    assert (a * u - (1 - a) * u).abs().max() > 0.1  # the flip changes the input
    # J2 (exact arm) = alpha * mean over particles and cells of KL(ref || cf), zero without a reference
    kl = torch.distributions.kl_divergence(
        torch.distributions.Normal(*reference), torch.distributions.Normal(*counterfactual)
    ).sum(-1)
    expected = 0.5 * (kl * batch["cf_mask"]).mean()
    torch.manual_seed(2)
    torch.testing.assert_close(exact.loss(batch)[1]["j2"], expected)

    published = cradle(batch, alpha=0.5, published=True)
    doubled = {k: torch.cat([v, v]) for k, v in batch.items()}
    results = {}
    for name, model in (("exact", exact), ("published", published)):
        torch.manual_seed(7)  # global latents are drawn first: same values for both batches
        single = float(model.loss(batch)[1]["j2"])
        torch.manual_seed(7)
        double = float(model.loss(doubled)[1]["j2"])
        results[name] = (single, double)
    assert results["exact"][1] == pytest.approx(results["exact"][0], rel=1e-5)  # a per-cell mean
    assert results["published"][1] == pytest.approx(2 * results["published"][0], rel=1e-5)  # a sum


def test_counterfactual_encoding_uses_flipped_artifact():
    """The three encodings: factual [x, z_p, a u], counterfactual [x, z_p, (1-a) u], reference."""
    batch = batch_of()
    model = cradle(batch)
    torch.manual_seed(3)
    _, guide_tr = model.traces(batch, num_particles=1)
    out = guide_tr.nodes["_RETURN"]["value"]
    m, e, u = (guide_tr.nodes[n]["value"] for n in ("m", "e", "u"))
    z_p = batch["D"] @ (e * m)
    a = batch["A"][:, None]
    enc = model.basal_encoder
    x = model.normalize(batch["X"])
    loc, _ = enc(x, z_p, a * u)
    torch.testing.assert_close(guide_tr.nodes["z_b"]["fn"].base_dist.loc, loc)
    cf_loc, _ = enc(x, z_p, (1 - a) * u)
    torch.testing.assert_close(out["cf_loc"], cf_loc)
    ref_loc, _ = enc(model.normalize(batch["X_cf"]), z_p, (1 - a) * u)
    torch.testing.assert_close(out["ref_loc"], ref_loc)


def test_class_balanced_reconstruction_weights():
    batch = batch_of()
    plain = cradle(batch, alpha=0.0)
    balanced = cradle(batch, alpha=0.0, class_balanced=True)
    torch.manual_seed(4)
    model_tr, _ = plain.traces(batch, num_particles=1)
    per_cell = model_tr.nodes["x"]["fn"].log_prob(batch["X"])  # (B,)
    a = batch["A"]
    f = a.mean()
    w = (1 - a) * f + a * (1 - f)
    torch.manual_seed(4)
    got = balanced.loss(batch, num_particles=1)[1]["reconstruction"]
    torch.testing.assert_close(got, (w * per_cell).sum() / len(a))
    torch.manual_seed(4)
    torch.testing.assert_close(plain.loss(batch, num_particles=1)[1]["reconstruction"], per_cell.mean())
