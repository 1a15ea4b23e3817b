"""The example repository's native pipelines, as a user runs them:

- classify_image: a raw PNG/JPEG file's bytes -> preprocess_image -> efficientnet_lite0_onnx
  -> top_k: the three best ImageNet labels, in one request;
- embed_text: text -> minilm_tokenizer -> all_minilm_l6_v2 -> mean_pool: a normalised
  384-dimensional sentence embedding.

Over HTTP and gRPC, batches up to the configured maximum, a bad row failing with its step
named, and dependency-aware unload on the real pipelines.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image
from tritonclient.utils import InferenceServerException

import e2e_util as u

pytestmark = pytest.mark.timeout(180)

IMAGES = u.ROOT / "configs" / "images"
# scripts/models/build_examples.py checks the same top classes with ONNX Runtime.
TOP3 = {
    "coffee.png": ([b"espresso", b"cup", b"coffee mug"], [967, 968, 504]),
    "chelsea.png": ([b"Egyptian cat", b"tiger cat", b"tabby"], [285, 282, 281]),
}
FOOD = "A man is eating food."
BREAD = "A man is eating a piece of bread."
BABY = "The girl is carrying a baby."


def image_bytes(name: str) -> bytes:
    return (IMAGES / name).read_bytes()


def jpeg_of(name: str) -> bytes:
    out = io.BytesIO()
    Image.open(IMAGES / name).convert("RGB").save(out, format="JPEG", quality=95)
    return out.getvalue()


def classify(client, mod, blobs: list[bytes]):
    i = mod.InferInput("IMAGE", [len(blobs), 1], "BYTES")
    i.set_data_from_numpy(np.array([[b] for b in blobs], dtype=np.object_))
    r = client.infer("classify_image", [i])
    return r.as_numpy("LABELS"), r.as_numpy("SCORES"), r.as_numpy("CLASS_IDS")


def embed(client, mod, texts: list[str]) -> np.ndarray:
    t = mod.InferInput("TEXT", [len(texts), 1], "BYTES")
    t.set_data_from_numpy(np.array([[s.encode()] for s in texts], dtype=np.object_))
    return client.infer("embed_text", [t]).as_numpy("EMBEDDING")


@pytest.fixture(scope="module")
def clients(server):
    h = httpclient.InferenceServerClient(server.hostport, network_timeout=120.0)
    g = grpcclient.InferenceServerClient(server.grpc_hostport)
    yield [(h, httpclient), (g, grpcclient)]
    h.close()
    g.close()


def test_classify_image_files(clients):
    for client, mod in clients:
        for name, (labels, ids) in TOP3.items():
            got_labels, scores, got_ids = classify(client, mod, [image_bytes(name)])
            assert got_labels.shape == (1, 3) and scores.shape == (1, 3)
            assert list(got_labels[0]) == labels, (name, got_labels)
            assert list(got_ids[0]) == ids
            assert scores.dtype == np.float32
            assert scores[0, 0] > 0.5 and all(np.diff(scores[0]) <= 0), scores
        # A batch of 8 (the maximum), PNG and JPEG mixed: every row its own answer.
        files = ["coffee.png", "chelsea.png"] * 4
        blobs = [image_bytes(f) if i % 3 else jpeg_of(f) for i, f in enumerate(files)]
        got_labels, _, _ = classify(client, mod, blobs)
        assert got_labels.shape == (8, 3)
        for row, f in zip(got_labels, files):
            assert row[0] == TOP3[f][0][0], (f, row)


def test_classify_image_refuses_what_is_not_an_image(clients):
    for client, mod in clients:
        with pytest.raises(InferenceServerException) as e:
            classify(client, mod, [image_bytes("coffee.png"), b"GIF89a not an image at all"])
        msg = e.value.message()
        assert "in ensemble 'classify_image', step 0 (model 'preprocess_image')" in msg, msg
        assert "row 1" in msg and "not a PNG or JPEG image" in msg, msg
        assert e.value.status() in ("400", "StatusCode.INVALID_ARGUMENT")
        # Too many images for one request: refused by the ensemble before any step.
        with pytest.raises(InferenceServerException) as e:
            classify(client, mod, [image_bytes("coffee.png")] * 9)
        assert e.value.status() in ("400", "StatusCode.INVALID_ARGUMENT")
        # The pipeline is unharmed.
        assert classify(client, mod, [image_bytes("chelsea.png")])[0][0][0] == b"Egyptian cat"


def test_embed_text_cosines(clients):
    for client, mod in clients:
        e = embed(client, mod, [FOOD, BREAD, BABY])
        assert e.shape == (3, 384) and e.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-4)
        assert abs(float(e[0] @ e[1]) - 0.75) < 0.02, e[0] @ e[1]
        assert abs(float(e[0] @ e[2]) - (-0.1)) < 0.02, e[0] @ e[2]
        # One text alone gives the embedding it gets inside a padded batch.
        alone = embed(client, mod, [FOOD])
        np.testing.assert_allclose(alone[0], e[0], atol=1e-4)


def test_embed_text_batch_of_64(clients):
    texts = [f"sentence number {i} about {'food' if i % 2 else 'a baby'}" for i in range(63)]
    texts.append(FOOD)
    for client, mod in clients:
        e = embed(client, mod, texts)
        assert e.shape == (64, 384)
        ref = embed(client, mod, [texts[5], FOOD])
        np.testing.assert_allclose(e[5], ref[0], atol=1e-4)
        np.testing.assert_allclose(e[63], ref[1], atol=1e-4)
    client, mod = clients[1]
    with pytest.raises(InferenceServerException) as exc:
        embed(client, mod, texts + ["one too many"])
    assert exc.value.status() == "StatusCode.INVALID_ARGUMENT"


def test_embed_text_refuses_text_that_is_not_utf8(clients):
    client, mod = clients[0]
    t = mod.InferInput("TEXT", [2, 1], "BYTES")
    t.set_data_from_numpy(np.array([[FOOD.encode()], [b"\xff\xfe bad"]], dtype=np.object_))
    with pytest.raises(InferenceServerException) as e:
        client.infer("embed_text", [t])
    msg = e.value.message()
    assert "in ensemble 'embed_text', step 0 (model 'minilm_tokenizer')" in msg, msg
    assert "row 1" in msg, msg


def test_pipeline_steps_load_and_unload_with_it(ferrite):
    repo = ferrite.repo("classify_image", "preprocess_image", "efficientnet_lite0_onnx", "top_k")
    srv = ferrite.start([repo], ["--model-control-mode=explicit"])
    g = grpcclient.InferenceServerClient(srv.grpc_hostport)
    try:
        g.load_model("classify_image")
        for m in ("classify_image", "preprocess_image", "efficientnet_lite0_onnx", "top_k"):
            assert g.is_model_ready(m), m
        assert classify(g, grpcclient, [image_bytes("coffee.png")])[0][0][0] == b"espresso"
        g.unload_model("efficientnet_lite0_onnx")
        assert not g.is_model_ready("classify_image")
        with pytest.raises(InferenceServerException) as e:
            classify(g, grpcclient, [image_bytes("coffee.png")])
        assert e.value.status() == "StatusCode.UNAVAILABLE"
        g.load_model("efficientnet_lite0_onnx")
        assert g.is_model_ready("classify_image")
        g.unload_model("classify_image", unload_dependents=True)
        for m in ("classify_image", "preprocess_image", "efficientnet_lite0_onnx", "top_k"):
            assert not g.is_model_ready(m), m
    finally:
        g.close()
