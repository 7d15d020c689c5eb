"""pyrovae: variational auto-encoders in Pyro with swappable likelihoods, guides and objectives.

The parts (see :mod:`pyrovae.registry` for their names):

* models — :class:`pyrovae.models.VAE` and its likelihood heads and priors;
* guides — :class:`pyrovae.guides.DiagonalGaussian`, ...;
* objectives — ``pyrovae.infer.make_objective("trace" | "meanfield" | "iwae")``;
* training — :func:`pyrovae.train.train` writes a run folder;
* options — each part declares what it reads (:mod:`pyrovae.options`); the run
  configuration (:class:`pyrovae.config.RunConfig`), the command line and TOML
  files are generated from those declarations.

Heavy modules are imported on first use, so ``import pyrovae`` stays cheap.
"""

from __future__ import annotations

__version__ = "0.2.0.dev0"

__all__ = ["__version__"]
