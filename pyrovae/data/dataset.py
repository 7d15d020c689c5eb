"""The :class:`Dataset` container shared by every loader, and :class:`DataError`.

A :class:`Dataset` holds three fixed splits (train / valid / test) as flat ``float32`` tensors of
shape ``(N, D)`` with values in ``[0, 1]``, where ``D = H * W`` for ``image_shape == (H, W)`` and
each row is an image flattened in row-major order. The container checks these invariants when it
is built, so a loader that produces anything else fails loudly instead of training on bad data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SPLITS: tuple[str, ...] = ("train", "valid", "test")


class DataError(Exception):
    """A dataset cannot be found, fetched or read.

    The message is a single user-facing line naming the problem and how to fix it, so the CLI can
    print it as-is instead of a traceback.
    """


@dataclass(frozen=True, eq=False)
class Dataset:
    """A dataset of flattened images split into train / valid / test.

    Attributes:
        name: registry name, e.g. ``"mnist-binarized"``.
        train, valid, test: ``float32`` tensors of shape ``(N_split, D)``, values in ``[0, 1]``.
        image_shape: ``(H, W)`` with ``H * W == D``.
        binary: every value the model sees is in ``{0, 1}``.
        dynamic_binarization: ``train`` holds grey-level probabilities and the trainer draws
            ``x ~ Bernoulli(train)`` afresh for each batch; ``valid`` and ``test`` are already
            binarised once, so evaluation is deterministic.
        source: folder the files were read from, or ``"embedded"``.
        train_labels, test_labels, valid_labels: ``int64`` class labels, where the file format
            has them, aligned with the rows of the matching split.
    """

    name: str
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    image_shape: tuple[int, int]
    binary: bool
    dynamic_binarization: bool
    source: str
    train_labels: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    valid_labels: torch.Tensor | None = None

    def __post_init__(self) -> None:
        height, width = self.image_shape
        dim = height * width
        if self.dynamic_binarization and not self.binary:
            raise ValueError(f"{self.name}: dynamic_binarization requires binary=True")
        for split in SPLITS:
            x = getattr(self, split)
            if not isinstance(x, torch.Tensor) or x.dtype != torch.float32 or x.dim() != 2:
                raise ValueError(f"{self.name}.{split} must be a 2-D float32 tensor")
            if x.shape[1] != dim:
                raise ValueError(
                    f"{self.name}.{split} has {x.shape[1]} columns, image_shape {self.image_shape} "
                    f"needs {dim}"
                )
            if x.numel() and (x.min() < 0 or x.max() > 1):
                raise ValueError(f"{self.name}.{split} has values outside [0, 1]")
            must_be_binary = self.binary and not (split == "train" and self.dynamic_binarization)
            if must_be_binary and not torch.logical_or(x == 0, x == 1).all():
                raise ValueError(f"{self.name}.{split} is declared binary but is not 0/1")
            labels = getattr(self, f"{split}_labels")
            if labels is not None and (labels.dtype != torch.int64 or labels.shape != x.shape[:1]):
                raise ValueError(f"{self.name}.{split}_labels must be int64 of shape ({len(x)},)")

    @property
    def data_dim(self) -> int:
        """The number of pixels ``D`` of one flattened image."""
        return self.train.shape[1]

    def split(self, name: str) -> torch.Tensor:
        """Return the ``"train"``, ``"valid"`` or ``"test"`` split."""
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
        return getattr(self, name)

    def __repr__(self) -> str:
        sizes = "/".join(str(len(getattr(self, s))) for s in SPLITS)
        return (
            f"Dataset(name={self.name!r}, splits={sizes}, image_shape={self.image_shape}, "
            f"binary={self.binary}, dynamic_binarization={self.dynamic_binarization}, "
            f"source={self.source!r})"
        )


def permutation_split(
    n: int, n_valid: int, n_test: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fixed train / valid / test indices for a dataset that ships without a split.

    ``perm = numpy.random.default_rng(seed).permutation(n)``; train is ``perm[: n - n_valid -
    n_test]``, valid the next ``n_valid`` entries and test the last ``n_test``, each kept in
    permutation order.
    """
    perm = np.random.default_rng(seed).permutation(n)
    n_train = n - n_valid - n_test
    return perm[:n_train], perm[n_train : n_train + n_valid], perm[n_train + n_valid :]
