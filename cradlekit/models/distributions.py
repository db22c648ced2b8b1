"""Distributions used by the guides and the likelihood.

``GumbelSoftmaxBernoulli``
    The straight-through Gumbel-softmax Bernoulli of SAMS-VAE / CRADLE-VAE: hard {0, 1}
    samples in the forward pass, gradients of the relaxed sample in the backward pass, and
    the **Bernoulli** log-probability of the hard value (the published
    ``GumbelSoftmaxBernoulliStraightThrough``). Pyro's ``RelaxedBernoulliStraightThrough``
    scores the relaxed sample under the continuous Concrete density instead, which would make
    ``log q(m) - log p(m)`` compare a density with a probability mass.
``NegativeBinomial``
    Gamma-Poisson with mean ``mu`` and inverse dispersion ``theta`` over a vector of genes
    (event dim 1), with a log-probability that evaluates the ``theta``-only terms once per
    observation instead of once per particle.
"""

from __future__ import annotations

import torch
from pyro.distributions import Bernoulli, GammaPoisson, RelaxedBernoulliStraightThrough
from pyro.distributions.torch_distribution import TorchDistribution
from torch.distributions import constraints

__all__ = ["GumbelSoftmaxBernoulli", "NegativeBinomial", "MU_EPS"]

#: Added to the NB mean before forming the Gamma rate (published value).
MU_EPS = 1e-4


class GumbelSoftmaxBernoulli(RelaxedBernoulliStraightThrough):
    """Straight-through Gumbel-softmax Bernoulli scored as a Bernoulli.

    Construct with ``GumbelSoftmaxBernoulli(temperature, logits=...)`` (or ``probs=``);
    ``temperature`` is a tensor (1 in the paper).
    """

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return Bernoulli(logits=self.logits, validate_args=False).log_prob(value)

    @property
    def mode(self) -> torch.Tensor:
        """Most probable hard value."""
        return (self.logits > 0).to(self.logits.dtype)


class NegativeBinomial(TorchDistribution):
    """Negative binomial over genes with mean ``mu`` and inverse dispersion ``theta``.

    ``lambda ~ Gamma(theta, theta / (mu + 1e-4))``, ``x ~ Poisson(lambda)`` (the published
    ``GammaPoisson`` parameterisation, ``1e-4`` included): mean ``mu + 1e-4``, variance
    ``mu' + mu'^2 / theta``. The last dimension is the event (genes).

    ``log_prob`` equals pyro's ``GammaPoisson(theta, theta / (mu + 1e-4)).log_prob(x).sum(-1)``,
    rearranged as ``[lgamma(x + theta) - lgamma(theta) - lgamma(x + 1) + theta log theta]
    + x log mu' - (theta + x) log(theta + mu')``: the bracket depends only on ``x`` and ``theta``
    and is evaluated at the shape of ``x`` (once, not once per particle).

    Parameters
    ----------
    mu
        ``(..., G)`` means.
    theta
        ``(G,)`` (or broadcastable) inverse dispersions.
    """

    arg_constraints = {"mu": constraints.nonnegative, "theta": constraints.positive}
    support = constraints.independent(constraints.nonnegative_integer, 1)
    has_rsample = False

    def __init__(self, mu: torch.Tensor, theta: torch.Tensor, validate_args: bool | None = False):
        self.mu = mu
        self.theta = theta
        super().__init__(mu.shape[:-1], mu.shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):  # noqa: D102
        batch_shape = torch.Size(batch_shape)
        return NegativeBinomial(self.mu.expand(batch_shape + self.event_shape), self.theta)

    @property
    def mean(self) -> torch.Tensor:  # noqa: D102
        return (self.mu + MU_EPS).expand(self.batch_shape + self.event_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:  # noqa: D102
        theta = self.theta
        const = (
            torch.lgamma(value + theta)
            - torch.lgamma(theta)
            - torch.lgamma(value + 1.0)
            + theta * torch.log(theta)
        ).sum(-1)
        mu = self.mu + MU_EPS
        per_particle = (value * torch.log(mu) - (theta + value) * torch.log(theta + mu)).sum(-1)
        return per_particle + const

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:  # noqa: D102
        mu = self.mu.expand(self.batch_shape + self.event_shape)
        return GammaPoisson(self.theta, self.theta / (mu + MU_EPS)).sample(sample_shape)
