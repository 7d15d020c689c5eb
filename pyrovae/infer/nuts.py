r"""A NUTS reference posterior (Hoffman & Gelman 2014, via :class:`pyro.infer.MCMC`).

For a small model on a small subset, exact-in-the-limit MCMC tells how far a
variational posterior is from the real one. :func:`nuts_chains` runs
``num_chains`` independent chains **one after another** in this process, each
an ``MCMC(NUTS(model), num_chains=1)`` with its own seed and its own random
initialisation (Pyro's ``init_to_uniform``), and stacks them to
``(chain, draw, ...)``. Pyro's own ``num_chains > 1`` would fork worker
processes (or, with fewer free CPUs than chains, warn and run sequentially
anyway); running them here keeps a PyroModule model in one process and the
result reproducible from ``seed``.

Every latent site is sampled, global and local alike: for a VAE with a
Bayesian decoder that is θ *and* every z_i of the subset (use a tiny decoder).

.. warning:: A VAE's posterior is not identifiable: permuting hidden units,
    flipping their signs, or rotating z (under N(0, I)) leaves p(x) unchanged.
    Chains started apart settle in different symmetric copies, and R-hat is
    then large for those weights although each chain mixes well. Compare
    symmetry-invariant quantities across chains and with VI (the output biases
    of a decoder without hidden layers; per-point log-likelihoods).
"""

from __future__ import annotations

from collections.abc import Callable

import pyro
import torch
from pyro.infer import MCMC, NUTS


def nuts_chains(
    model: Callable,
    *args,
    num_samples: int = 200,
    warmup_steps: int = 200,
    num_chains: int = 2,
    seed: int = 0,
    max_tree_depth: int = 8,
    target_accept_prob: float = 0.8,
    **kwargs,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Run independent NUTS chains on ``model(*args, **kwargs)``.

    :returns: ``(samples, stats)``: ``samples[site]`` of shape
        ``(num_chains, num_samples, *site_shape)`` and ``stats["diverging"]``
        of shape ``(num_chains, num_samples)`` (bool).
    """
    if num_chains < 1 or num_samples < 1:
        raise ValueError("num_chains and num_samples must be positive")
    chains, diverging = [], []
    for chain in range(num_chains):
        pyro.set_rng_seed(seed * 1_000_003 + chain)
        kernel = NUTS(
            model,
            jit_compile=False,
            max_tree_depth=max_tree_depth,
            target_accept_prob=target_accept_prob,
        )
        mcmc = MCMC(
            kernel, num_samples=num_samples, warmup_steps=warmup_steps, disable_progbar=True
        )
        mcmc.run(*args, **kwargs)
        chains.append({k: v.detach() for k, v in mcmc.get_samples().items()})
        flags = torch.zeros(num_samples, dtype=torch.bool)
        divergent = mcmc.diagnostics().get("divergences", {}).get("chain 0", [])
        flags[torch.as_tensor(list(divergent), dtype=torch.long)] = True
        diverging.append(flags)
    samples = {k: torch.stack([c[k] for c in chains]) for k in chains[0]}
    return samples, {"diverging": torch.stack(diverging)}
