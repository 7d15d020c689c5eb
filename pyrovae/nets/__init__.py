"""Networks: the bodies of encoders and decoders (the parts that choose them:
:mod:`pyrovae.networks`).

* :mod:`pyrovae.nets.mlp` — multi-layer perceptrons (Kingma & Welling 2013);
* :mod:`pyrovae.nets.conv` — stride-2 convolutional encoders and transposed-convolution
  decoders for images of any (C, H, W);
* :mod:`pyrovae.nets.pixelcnn` — the gated PixelCNN (van den Oord et al. 2016).
"""

from pyrovae.nets.conv import ConvDecoder, ConvEncoder
from pyrovae.nets.mlp import ACTIVATION, HIDDEN, INIT, INITS, OPTIONS, aevb_init_, mlp
from pyrovae.nets.pixelcnn import GatedPixelCNN

__all__ = [
    "ACTIVATION",
    "HIDDEN",
    "INIT",
    "INITS",
    "OPTIONS",
    "ConvDecoder",
    "ConvEncoder",
    "GatedPixelCNN",
    "aevb_init_",
    "mlp",
]
