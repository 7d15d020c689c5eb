"""The data plate shared by every pyrovae model and guide."""

from __future__ import annotations

import pyro
import torch


def data_plate(x: torch.Tensor, num_data: int | None = None) -> pyro.plate:
    """``pyro.plate("data")`` over the minibatch ``x`` (rightmost batch dim, ``dim=-1``).

    With ``num_data = N`` larger than the batch size ``B``, every log-density
    inside the plate is scaled by ``N / B``, so a minibatch ELBO is an unbiased
    estimate of the full-dataset ELBO (Kingma & Welling 2013, eq. 8). The
    minibatch is taken as given: the subsample indices are ``0..B-1`` of ``x``
    and the plate draws no random numbers. Model and guide must call this with
    the same ``num_data``.

    Example:

    >>> import pyro
    >>> import pyro.distributions as dist
    >>> import torch
    >>> from pyro import poutine
    >>> from pyrovae.models import data_plate
    >>> x = torch.zeros(10, 3)
    >>> def model(x, num_data=None):
    ...     with data_plate(x, num_data):
    ...         pyro.sample("obs", dist.Normal(0.0, 1.0).expand([3]).to_event(1), obs=x)
    >>> trace = poutine.trace(model).get_trace(x, num_data=1000)
    >>> trace.nodes["obs"]["scale"]  # N / B: the minibatch estimates the full-data sum
    100.0
    """
    batch = x.shape[0]
    if num_data is None or num_data == batch:
        return pyro.plate("data", batch, dim=-1)
    if num_data < batch:
        raise ValueError(f"num_data={num_data} is smaller than the batch size {batch}")
    return pyro.plate("data", num_data, subsample=torch.arange(batch, device=x.device), dim=-1)
