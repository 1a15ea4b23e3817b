"""Reference image preprocessing for the efficientnet_lite0_onnx example.

This is the preprocessing that ``expected.json`` was computed with: the one of
Triton's ``image_client.py`` (PIL ``Image.resize((224, 224), Image.BILINEAR)``
of the RGB image, no crop, NCHW float32), with the scaling the
EfficientNet-Lite weights were trained with, spelled out exactly so that a
client in another language can reproduce it bit for bit.

Steps, for a PNG file:

1. Decode to 8-bit RGB (channel order R, G, B; the sample PNGs are 8-bit RGB,
   no alpha, no palette).
2. Stretch to 224x224 (aspect ratio not kept, no crop) with an antialiased
   bilinear (triangle) filter in 8-bit fixed point -- Pillow's BILINEAR
   algorithm, horizontal pass first.  ``pil_bilinear_resize`` below implements
   it in numpy so that it does not depend on the installed Pillow; for the two
   sample photos it is bit-identical to ``Image.resize((224, 224),
   Image.BILINEAR)`` (checked at run time, a warning is printed if not).
   (Pillow 13 runs the vertical pass first when the height shrinks much more
   than the width -- python-pillow/Pillow#9549 -- and then differs by +-1 in
   some pixels; for 600x400 and 451x300 -> 224x224 it goes horizontal first.)

   For each axis separately, with ``in`` input pixels and ``out`` output pixels::

       scale   = in / out                       (double)
       fscale  = max(scale, 1.0)
       support = 1.0 * fscale                   (triangle filter, radius 1)
       for o in 0..out:
           center = (o + 0.5) * scale
           lo = max(int(center - support + 0.5), 0)      # int() truncates
           hi = min(int(center + support + 0.5), in)
           w[i] = max(0, 1 - |(i - center + 0.5) / fscale|)   for i in lo..hi-1
           w[i] /= sum(w)                                     (double)
           k[i] = int(w[i] * 2^22 + 0.5)        (all w >= 0 for this filter)

   Horizontal pass (width W -> 224) on every row, then vertical pass
   (height H -> 224) on every column of that result, each computing per
   channel, in integer arithmetic::

       acc = 2^21 + sum_i pixel[i] * k[i]
       out = clamp(acc >> 22, 0, 255)           (stored as uint8)

   The horizontal pass output (uint8, H x 224) is the vertical pass input.
   A pass is skipped when that dimension already has the target size.
3. Convert to float32 and scale.  Default (``lite``): ``(x - 127) / 128`` --
   MEAN_RGB 127 / STDDEV_RGB 128 of the TF EfficientNet-Lite training code.
   Alternative (``inception``): ``x / 127.5 - 1`` -- what Triton's
   ``image_client -s INCEPTION`` does.  Both give the same top-3 on the
   sample images; logits differ by a few hundredths.
4. Transpose HWC -> CHW and add the batch dimension: ``[1, 3, 224, 224]``.
"""

from __future__ import annotations

import numpy as np

PRECISION_BITS = 32 - 8 - 2  # Pillow's Resample.c

SCALINGS = {
    "lite": "(x - 127) / 128",
    "inception": "x / 127.5 - 1",
}


def _coeffs(in_size: int, out_size: int):
    """Pillow precompute_coeffs + normalize_coeffs_8bpc for the bilinear filter.

    Returns (index[out, ksize], k[out, ksize]) with int64 fixed-point weights;
    taps beyond a pixel's window have weight 0 and index 0.
    """
    scale = in_size / out_size
    fscale = max(scale, 1.0)
    support = 1.0 * fscale
    ksize = int(np.ceil(support)) * 2 + 1
    index = np.zeros((out_size, ksize), dtype=np.int64)
    k = np.zeros((out_size, ksize), dtype=np.int64)
    for o in range(out_size):
        center = (o + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        taps = np.arange(lo, hi)
        w = np.maximum(0.0, 1.0 - np.abs((taps - center + 0.5) / fscale))
        total = w.sum()
        if total != 0.0:
            w = w / total
        fixed = np.where(w < 0, -0.5 + w * (1 << PRECISION_BITS), 0.5 + w * (1 << PRECISION_BITS))
        n = hi - lo
        index[o, :n] = taps
        k[o, :n] = np.trunc(fixed).astype(np.int64)
    return index, k


def _clip8(acc: np.ndarray) -> np.ndarray:
    return np.clip(acc >> PRECISION_BITS, 0, 255).astype(np.uint8)


def pil_bilinear_resize(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bit-exact numpy port of Pillow ``Image.resize((width, height), BILINEAR)``
    for 8-bit images of shape [H, W, C]."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3:
        raise ValueError("expected an 8-bit HxWxC image")
    h, w, _ = rgb.shape
    out = rgb
    if w != width:
        idx, k = _coeffs(w, width)
        src = out.astype(np.int64)
        acc = np.full((h, width, out.shape[2]), 1 << (PRECISION_BITS - 1), dtype=np.int64)
        for t in range(idx.shape[1]):
            acc += src[:, idx[:, t], :] * k[None, :, t, None]
        out = _clip8(acc)
    if h != height:
        idx, k = _coeffs(h, height)
        src = out.astype(np.int64)
        acc = np.full((height, out.shape[1], out.shape[2]), 1 << (PRECISION_BITS - 1), dtype=np.int64)
        for t in range(idx.shape[1]):
            acc += src[idx[:, t], :, :] * k[:, t, None, None]
        out = _clip8(acc)
    return out


def scale(rgb_uint8: np.ndarray, scaling: str = "lite") -> np.ndarray:
    x = rgb_uint8.astype(np.float32)
    if scaling == "lite":
        return (x - np.float32(127.0)) / np.float32(128.0)
    if scaling == "inception":
        return x / np.float32(127.5) - np.float32(1.0)
    raise ValueError(f"unknown scaling {scaling!r}")


def load_rgb(path) -> np.ndarray:
    """Decode an image file to an 8-bit RGB [H, W, 3] array (Pillow)."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def pillow_agrees(rgb: np.ndarray, resized: np.ndarray) -> bool:
    """Whether Pillow's own BILINEAR resize gives exactly ``resized``."""
    from PIL import Image

    h, w = resized.shape[:2]
    ref = np.asarray(Image.fromarray(rgb, "RGB").resize((w, h), Image.Resampling.BILINEAR))
    return np.array_equal(ref, resized)


def to_tensor(resized: np.ndarray, scaling: str = "lite") -> np.ndarray:
    """uint8 HxWx3 RGB -> float32 [1, 3, H, W]."""
    return np.ascontiguousarray(scale(resized, scaling).transpose(2, 0, 1)[None])


def preprocess(path, scaling: str = "lite", size: int = 224) -> np.ndarray:
    """Image file -> float32 [1, 3, size, size] NCHW tensor (see module docstring)."""
    return to_tensor(pil_bilinear_resize(load_rgb(path), size, size), scaling)
