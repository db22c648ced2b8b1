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
    observation instead of once per particle. Built from frequencies and library sizes
    (:meth:`NegativeBinomial.from_frequencies`, what the decoders use) the per-particle part of
    the log-probability is one fused autograd function (:func:`nb_log_likelihood`).
"""

from __future__ import annotations

import torch
from pyro.distributions import Bernoulli, GammaPoisson, RelaxedBernoulliStraightThrough
from pyro.distributions.torch_distribution import TorchDistribution
from torch.autograd.function import once_differentiable
from torch.distributions import constraints

__all__ = ["GumbelSoftmaxBernoulli", "NegativeBinomial", "nb_log_likelihood", "MU_EPS"]

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


def _mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a * b``, in place in ``a`` (a temporary) when ``a`` has the broadcast shape."""
    return a.mul_(b) if a.shape == torch.broadcast_shapes(a.shape, b.shape) else a * b


class _NBLogLikelihood(torch.autograd.Function):
    """``sum_g x log mu' - (theta + x) log(theta + mu')`` with ``mu' = l * rho + 1e-4``.

    Forward and backward are written out so that the ``(..., B, G)`` intermediates are made
    fewer times than by the composed autograd graph (about half the elementwise passes); it
    saves ``mu'`` and ``log(theta + mu')`` (the composed graph saves as much).
    """

    @staticmethod
    def forward(ctx, rho, library, theta, value):  # noqa: D102
        mu = (rho * library.unsqueeze(-1)).add_(MU_EPS)
        log_theta_mu = torch.add(mu, theta).log_()
        theta_value = theta + value
        out = _mul(torch.log(mu), value).sum(-1) - (theta_value * log_theta_mu).sum(-1)
        ctx.save_for_backward(mu, log_theta_mu, library, theta, value)
        ctx.rho_shape = rho.shape
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):  # noqa: D102
        mu, log_theta_mu, library, theta, value = ctx.saved_tensors
        theta_mu = mu + theta
        theta_value = theta + value
        if theta_mu.shape == torch.broadcast_shapes(theta_mu.shape, theta_value.shape):
            ratio = torch.div(theta_value, theta_mu, out=theta_mu)  # (theta + x) / (theta + mu')
        else:
            ratio = theta_value / theta_mu
        dmu = torch.div(value, mu).sub_(ratio)  # d/dmu' of the log-likelihood
        g = grad.unsqueeze(-1)
        grad_rho = grad_library = grad_theta = None
        if ctx.needs_input_grad[3]:
            raise RuntimeError("the NB log-likelihood is not differentiable in the counts")
        if ctx.needs_input_grad[2]:
            grad_theta = ratio.add_(log_theta_mu).mul_(g).neg_().sum_to_size(theta.shape)
        if ctx.needs_input_grad[1]:
            rho = (mu - MU_EPS) / library.unsqueeze(-1)
            grad_library = (dmu * rho * g).sum(-1).sum_to_size(library.shape)
        if ctx.needs_input_grad[0]:
            grad_rho = dmu.mul_(g * library.unsqueeze(-1)).sum_to_size(ctx.rho_shape)
        return grad_rho, grad_library, grad_theta, None


def nb_log_likelihood(
    rho: torch.Tensor, library: torch.Tensor, theta: torch.Tensor, value: torch.Tensor
) -> torch.Tensor:
    """Per-observation part of the NB log-probability, summed over genes.

    ``sum_g [x log mu' - (theta + x) log(theta + mu')]`` with ``mu' = library * rho + 1e-4``;
    :meth:`NegativeBinomial.log_prob` adds the terms that depend only on ``x`` and ``theta``.

    Parameters
    ----------
    rho
        ``(..., B, G)`` gene frequencies.
    library
        ``(B,)`` (broadcastable to ``rho.shape[:-1]``) library sizes.
    theta
        ``(G,)`` inverse dispersions.
    value
        ``(B, G)`` counts (broadcastable against ``rho``).
    """
    return _NBLogLikelihood.apply(rho, library, theta, value)


class NegativeBinomial(TorchDistribution):
    """Negative binomial over genes with mean ``mu`` and inverse dispersion ``theta``.

    ``lambda ~ Gamma(theta, theta / (mu + 1e-4))``, ``x ~ Poisson(lambda)`` (the published
    ``GammaPoisson`` parameterisation, ``1e-4`` included): mean ``mu + 1e-4``, variance
    ``mu' + mu'^2 / theta``. The last dimension is the event (genes).

    ``log_prob`` equals pyro's ``GammaPoisson(theta, theta / (mu + 1e-4)).log_prob(x).sum(-1)``,
    rearranged as ``[lgamma(x + theta) - lgamma(x + 1)] + [theta log theta - lgamma(theta)]
    + x log mu' - (theta + x) log(theta + mu')``: the first bracket depends only on ``x`` and
    ``theta`` and is evaluated at the shape of ``x`` (once, not once per particle), the second
    only on ``theta`` (evaluated per gene).

    Parameters
    ----------
    mu
        ``(..., G)`` means.
    theta
        ``(G,)`` (or broadcastable) inverse dispersions.

    Use :meth:`from_frequencies` for ``mu = library * rho``: same distribution, with the fused
    log-likelihood of :func:`nb_log_likelihood`.
    """

    arg_constraints = {"mu": constraints.nonnegative, "theta": constraints.positive}
    support = constraints.independent(constraints.nonnegative_integer, 1)
    has_rsample = False

    def __init__(self, mu: torch.Tensor, theta: torch.Tensor, validate_args: bool | None = False):
        self._mu: torch.Tensor | None = mu
        self._rho: torch.Tensor | None = None
        self._library: torch.Tensor | None = None
        self.theta = theta
        super().__init__(mu.shape[:-1], mu.shape[-1:], validate_args=validate_args)

    @classmethod
    def from_frequencies(
        cls, rho: torch.Tensor, library: torch.Tensor, theta: torch.Tensor
    ) -> NegativeBinomial:
        """NB with mean ``library[..., None] * rho`` (``rho``: ``(..., G)``, ``library``: ``(...)``).

        ``log_prob`` then uses :func:`nb_log_likelihood`; the mean ``mu`` is only formed when
        asked for (``mean``, ``sample``).
        """
        self = cls.__new__(cls)
        self._mu, self._rho, self._library, self.theta = None, rho, library, theta
        batch_shape = torch.broadcast_shapes(rho.shape[:-1], library.shape)
        TorchDistribution.__init__(self, batch_shape, rho.shape[-1:], validate_args=False)
        return self

    @property
    def mu(self) -> torch.Tensor:
        """The mean without the ``1e-4`` offset."""
        if self._mu is None:
            self._mu = self._library.unsqueeze(-1) * self._rho
        return self._mu

    def expand(self, batch_shape, _instance=None):  # noqa: D102
        batch_shape = torch.Size(batch_shape)
        if self._rho is not None:
            return NegativeBinomial.from_frequencies(
                self._rho.expand(batch_shape + self.event_shape),
                self._library.expand(batch_shape),
                self.theta,
            )
        return NegativeBinomial(self.mu.expand(batch_shape + self.event_shape), self.theta)

    @property
    def mean(self) -> torch.Tensor:  # noqa: D102
        return (self.mu + MU_EPS).expand(self.batch_shape + self.event_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:  # noqa: D102
        theta = self.theta
        theta_only = theta * torch.log(theta) - torch.lgamma(theta)
        theta_only = theta_only.expand(torch.broadcast_shapes(theta_only.shape, value.shape[-1:]))
        const = (torch.lgamma(value + theta) - torch.lgamma(value + 1.0)).sum(-1) + theta_only.sum(-1)
        if self._rho is not None:
            return nb_log_likelihood(self._rho, self._library, theta, value) + const
        mu = self.mu + MU_EPS
        per_particle = (value * torch.log(mu) - (theta + value) * torch.log(theta + mu)).sum(-1)
        return per_particle + const

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:  # noqa: B008, D102 - torch's signature
        mu = self.mu.expand(self.batch_shape + self.event_shape)
        return GammaPoisson(self.theta, self.theta / (mu + MU_EPS)).sample(sample_shape)
