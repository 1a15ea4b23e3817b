"""Reference tensors for tests/preprocess_reference.rs, from scripts/models/preprocess.py.

    python reference.py REPO_ROOT OUT_DIR

For each sample image writes OUT_DIR/<stem>.<case>.bin (raw little-endian bytes) and prints a
JSON summary (checksums and a few sampled values) -- the same summary that
tests/fixtures/preprocess_reference.json holds, for machines without the Python reference.

Cases:
  resized     uint8 HWC 224x224x3: preprocess.pil_bilinear_resize (Pillow BILINEAR)
  lite        FP32 NCHW [3,224,224]: preprocess.to_tensor(..., "lite"), (x - 127) / 128
  inception   FP32 NCHW [3,224,224]: preprocess.to_tensor(..., "inception"), x / 127.5 - 1
  vgg_nhwc    FP32 NHWC [224,224,3]: Triton image_client.py's VGG, x - (123, 117, 104)
  grey_nhwc   FP32 NHWC [120,160,1]: Triton image_client.py for a one-channel model, NONE:
              Pillow's own convert("L").resize((160, 120), BILINEAR)
"""

import json
import sys
from pathlib import Path

import numpy as np

root, out = Path(sys.argv[1]), Path(sys.argv[2])
sys.path.insert(0, str(root / "scripts" / "models"))
import preprocess as P  # noqa: E402
from PIL import Image  # noqa: E402

IMAGES = ["coffee.png", "chelsea.png"]


def checksum(data: bytes):
    """[sum of bytes, sum of (i + 1) * byte mod 2^64] -- tests/preprocess_reference.rs too."""
    b = np.frombuffer(data, dtype=np.uint8).astype(np.uint64)
    weights = np.arange(1, len(b) + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return [int(b.sum()), int((b * weights).sum(dtype=np.uint64))]


def samples(arr: np.ndarray):
    flat = arr.reshape(-1)
    idx = np.linspace(0, flat.size - 1, 7).astype(int)
    return [[int(i), float(flat[i])] for i in idx]


summary = {}
for name in IMAGES:
    path = root / "configs" / "images" / name
    rgb = P.load_rgb(path)
    resized = P.pil_bilinear_resize(rgb, 224, 224)
    with Image.open(path) as im:
        grey = np.asarray(im.convert("L").resize((160, 120), Image.BILINEAR), dtype=np.uint8)
    cases = {
        "resized": resized,
        "lite": P.to_tensor(resized, "lite")[0],
        "inception": P.to_tensor(resized, "inception")[0],
        "vgg_nhwc": resized.astype(np.float32) - np.asarray((123, 117, 104), dtype=np.float32),
        "grey_nhwc": grey[:, :, np.newaxis].astype(np.float32),
    }
    entry = {
        "file": checksum(path.read_bytes()),
        "size": [int(rgb.shape[1]), int(rgb.shape[0])],
        "pillow_agrees": bool(P.pillow_agrees(rgb, resized)),
    }
    for case, arr in cases.items():
        data = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
        (out / f"{Path(name).stem}.{case}.bin").write_bytes(data)
        entry[case] = {"checksum": checksum(data), "samples": samples(arr)}
    summary[name] = entry

print(json.dumps(summary, indent=1, sort_keys=True))
