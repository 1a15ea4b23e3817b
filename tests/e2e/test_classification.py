"""Classification extension on efficientnet_lite0_onnx: top-3 "score:index:label" for two images.

The client preprocesses as a Triton user would, and as scripts/models/preprocess.py documents
(that is what scripts/models/expected.json was computed with): RGB, stretched to 224x224 with
PIL's BILINEAR, (x - 127) / 128, float32 NCHW with a batch dimension.
"""

import json

import numpy as np
import pytest
import tritonclient.http as httpclient
from PIL import Image

import e2e_util as u

MODEL = "efficientnet_lite0_onnx"

# Independent of expected.json: what the two pictures show (ImageNet class names).
KNOWN_TOP1 = {"coffee.png": "espresso", "chelsea.png": "egyptian cat"}
KNOWN_COFFEE_TOP3 = {"espresso", "cup", "coffee mug"}


def preprocess(path):
    img = Image.open(path).convert("RGB").resize((224, 224), Image.BILINEAR)
    x = (np.asarray(img, dtype=np.float32) - 127.0) / 128.0  # HWC
    return np.ascontiguousarray(x.transpose(2, 0, 1)[np.newaxis], dtype=np.float32)  # [1, 3, 224, 224]


def expected_top3(image):
    """[(index, label, score)] from scripts/models/expected.json ("top3": the (x - 127) / 128 scaling)."""
    data = json.loads(u.EXPECTED_JSON.read_text())
    return [(e["index"], e["label"], e["score"]) for e in data["images"][image]["top3"]]


def test_classifier_metadata(client):
    meta = client.get_model_metadata(MODEL)
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 224, 224]}]
    assert meta["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 1000]}]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("image", ["coffee.png", "chelsea.png"])
def test_top3(client, image, binary):
    x = preprocess(u.IMAGES / image)
    inp = httpclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    out = httpclient.InferRequestedOutput("logits", binary_data=binary, class_count=3)
    res = client.infer(MODEL, [inp], outputs=[out])

    logits = res.get_output("logits")
    assert (logits["datatype"], logits["shape"]) == ("BYTES", [1, 3])
    entries = [v.decode() if isinstance(v, bytes) else v for v in res.as_numpy("logits").flatten()]

    names = (u.MODEL_REPO / MODEL / "labels.txt").read_text().splitlines()
    assert len(names) == 1000
    got = []
    for e in entries:
        score, index, label = e.split(":", 2)  # Triton's "score:index:label"
        assert names[int(index)] == label, f"{e!r}: the label is not line {index} of labels.txt"
        got.append((int(index), label, float(score)))
    assert [g[2] for g in got] == sorted((g[2] for g in got), reverse=True), entries

    want = expected_top3(image)
    assert [(i, label.lower()) for i, label, _ in got] == [(i, label.lower()) for i, label, _ in want], \
        f"{entries} vs expected {want}"
    # raw logits, as Triton reports them; expected.json rounds them to 3 decimals
    for (_, _, score), (_, _, want_score) in zip(got, want):
        assert abs(score - want_score) < 0.01, f"{entries} vs expected {want}"

    assert got[0][1].lower() == KNOWN_TOP1[image], entries
    if image == "coffee.png":
        assert {label.lower() for _, label, _ in got} == KNOWN_COFFEE_TOP3, entries
