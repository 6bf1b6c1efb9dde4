"""What the annotation page sends and receives besides its JSON: masks packed into bits, heat maps
as coloured PNGs over a clipped range, and errors as one line of JSON."""
from __future__ import annotations

import base64
import binascii
import io

import numpy as np
from flask import jsonify
from matplotlib import colormaps
from matplotlib.image import imsave

from ..errors import EBNNError

__all__ = ["MaskEncodingError", "encode_mask", "decode_mask", "png", "heat_range", "heat_rgba", "heat_scale",
           "error_response", "HEAT_PERCENTILES"]

#: the heat maps' colours span these percentiles of the map's non-zero magnitudes (clipped beyond)
HEAT_PERCENTILES = (1, 99)
#: matplotlib's perceptual colour maps of the heat maps: unsigned, signed
SEQUENTIAL, DIVERGING = "inferno", "RdBu_r"


class MaskEncodingError(EBNNError):
    """A mask sent to the page's API is not a valid encoding."""


# -- masks on the wire ----------------------------------------------------------------------------

def encode_mask(mask: np.ndarray) -> dict:
    """A bool H x W mask as {"shape": [H, W], "bits": base64 of numpy.packbits, row-major}."""
    mask = np.asarray(mask, bool)
    return {"shape": list(mask.shape), "bits": base64.b64encode(np.packbits(mask.ravel())).decode("ascii")}


def decode_mask(value) -> np.ndarray:
    """The mask array of an encoded mask (see :func:`encode_mask`), or of nested lists of rows.
    Checks the encoding only; the store checks size and values."""
    if isinstance(value, list):
        array = np.array(value, dtype=object)
        if array.ndim != 2 or not all(isinstance(v, (int, float)) for v in array.flat):
            raise MaskEncodingError("a mask given as a list must be rows of numbers of equal length")
        return array.astype(float)
    if not isinstance(value, dict) or set(value) != {"shape", "bits"}:
        raise MaskEncodingError('a mask must be {"shape": [height, width], "bits": "<base64 of numpy.packbits>"}')
    shape = value["shape"]
    if (not isinstance(shape, list) or len(shape) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)):
        raise MaskEncodingError(f"the mask's shape must be [height, width] with positive integers, got {shape!r}")
    try:
        packed = base64.b64decode(value["bits"], validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise MaskEncodingError("the mask's bits are not valid base64") from None
    size = shape[0] * shape[1]
    if len(packed) != -(-size // 8):
        raise MaskEncodingError(f"a {shape[0]} x {shape[1]} mask packs into {-(-size // 8)} bytes, got {len(packed)}")
    bits = np.unpackbits(np.frombuffer(packed, np.uint8))
    if bits[size:].any():
        raise MaskEncodingError("the mask's padding bits after the last pixel must be 0")
    return bits[:size].reshape(shape).astype(bool)


# -- heat maps as pictures -----------------------------------------------------------------------

def png(array: np.ndarray, **kwargs) -> bytes:
    buffer = io.BytesIO()
    imsave(buffer, array, format="png", **kwargs)
    return buffer.getvalue()


def heat_range(heat: np.ndarray) -> tuple[bool, float, float]:
    """Whether the map is signed, and the range its colours span: percentile clipping of the
    non-zero magnitudes (``HEAT_PERCENTILES``), symmetric when signed, so that one outlier does not
    leave the rest of the map dark.

    >>> heat = np.full((28, 28), 0.5); heat[3, 4] = 1e6       # one huge outlier
    >>> heat_range(heat)                                       # the rest at full strength
    (False, 0.0, 0.5)
    """
    magnitude = np.abs(heat[heat != 0])
    if magnitude.size == 0:
        return bool((heat < 0).any()), 0.0, 1.0
    low, high = (float(v) for v in np.percentile(magnitude, HEAT_PERCENTILES))
    if (heat < 0).any():
        return True, -high, high
    return False, (low if low < high else 0.0), high


def heat_rgba(heat: np.ndarray, bounds: tuple | None = None) -> np.ndarray:
    """Colours from a perceptual colour map, diverging (signed) or sequential, over the clipped
    range ``bounds`` (default :func:`heat_range`); opacity grows with the clipped strength."""
    signed, low, high = heat_range(heat) if bounds is None else bounds
    scaled = np.clip((heat - low) / (high - low), 0, 1)
    rgba = colormaps[DIVERGING if signed else SEQUENTIAL](scaled)
    rgba[..., 3] = np.clip(np.abs(heat) / high, 0, 1) if signed else scaled
    return rgba


def heat_scale(signed: bool) -> np.ndarray:
    """The colour scale of :func:`heat_rgba`, 1 x 256 RGBA from low to high (from -1 to 1 when signed)."""
    ramp = np.linspace(-1.0 if signed else 0.0, 1.0, 256)[None]
    return heat_rgba(ramp, (signed, -1.0 if signed else 0.0, 1.0))


def error_response(status: int, message: str):
    """``{"error": message}`` with the HTTP ``status``."""
    response = jsonify(error=message)
    response.status_code = status
    return response
