"""docs/write-a-driver.md, followed as a new user would: its shell steps 1 to 4 run verbatim
(a driver crate from the template, built, put in a backends folder, a model that uses it),
then step 5's server serves the model and answers what the guide says it answers."""

import json
import re
import subprocess

import numpy as np
import tritonclient.http as httpclient

import e2e_util as u

GUIDE = u.ROOT / "docs" / "write-a-driver.md"
BUILD_TIMEOUT_S = 900


def steps() -> dict[int, str]:
    """The guide's ```sh blocks that begin with `# step N`."""
    blocks = re.findall(r"```sh\n(.*?)```", GUIDE.read_text(), re.S)
    out = {}
    for block in blocks:
        m = re.match(r"# step (\d+)", block)
        if m:
            out[int(m.group(1))] = block
    return out


def test_the_guide_makes_a_driver_that_serves(prerequisites, ferrite, tmp_path):
    found = steps()
    assert sorted(found) == [1, 2, 3, 4, 5], f"the guide's steps: {sorted(found)}"
    env = {**u.server_env(), "FERRITE": str(u.ROOT)}
    for n in (1, 2, 3, 4):
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", found[n]], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        assert done.returncode == 0, f"step {n} failed:\n{found[n]}\n{done.stdout}\n{done.stderr}"
    assert (tmp_path / "backends" / "scale" / "libferrite_driver_scale.so").is_file()

    # Step 5: the server on the guide's folders (port 0 here), and the guide's request.
    srv = ferrite.start([tmp_path / "models"], backend_dir=tmp_path / "backends")
    request = re.search(r"-d '(\{.*\})'", found[5]).group(1)
    expected = re.search(r"^# (\{.*\})$", found[5], re.M).group(1)
    reply = u.post_json(srv.hostport, "/v2/models/double/infer", json.loads(request))
    assert reply.status == 200, reply
    assert reply.json() == json.loads(expected)
    client = httpclient.InferenceServerClient(url=srv.hostport)
    x = httpclient.InferInput("INPUT", [2, 2], "FP32")
    x.set_data_from_numpy(np.array([[1, -1], [0.5, 4]], dtype=np.float32))
    np.testing.assert_allclose(client.infer("double", [x]).as_numpy("OUTPUT"), [[2, -2], [1, 8]])
    client.close()
