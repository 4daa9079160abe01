"""The service end to end with `backend: {type: openai}` pointed at `streamproc serve` (the tiny
checkpoint in another process): a real HTTP hop per segment, the rule question riding in the caption
call (the default urgent policy's joint call: an OpenAI backend keeps no KV history), captions on
MQTT as with the other backends, token counts from the server's `usage`."""
from __future__ import annotations

import re

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from tests.integration.conftest import mqtt_section  # noqa: E402
from tests.support.serve import serve_process  # noqa: E402
from tests.support.service import ServiceProcess, service_config, write_config  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.hf, pytest.mark.timeout(300)]


def test_service_through_an_openai_compatible_server(broker, subscribe, make_video, tiny_model_dir, tmp_path):
    sub = subscribe(broker.port, ["sp/#"])
    clip = make_video(duration_s=6, fps=10, width=224, height=168, seed=4)
    key_env = {"STREAMPROC_API_KEY": "sk-e2e-key-123456", "REMOTE_KEY": "sk-e2e-key-123456"}
    # The server takes its backend from a config file, as `streamproc serve CONFIG` does on a box.
    served_config = write_config(tmp_path, {"backend": {"type": "hf", "model": str(tiny_model_dir), "device": "cpu",
                                                        "dtype": "float32"}}, name="serve.yaml")
    with serve_process(tmp_path, [str(served_config), "--served-model-name", "tiny-remote"],
                       env=key_env, name="serve") as server:
        config = service_config(
            tiny_model_dir,
            sources=[{"name": "yard", "path": str(clip)}],
            sinks=mqtt_section(broker, tmp_path),
            segmenting={"max_duration_s": 2},
        )
        config["backend"] = {
            "type": "openai", "base_url": server.base_url, "model": "tiny-remote", "api_key_env": "REMOTE_KEY",
            "seq_length": 1024, "max_pixels": "112x112", "timeout_s": 60,
        }  # fmt: skip
        config["rules"] = [{"name": "person", "question": "Is there a person in the video?"}]
        path = write_config(tmp_path, config)
        with ServiceProcess(["-m", "streamproc", "run", str(path)], tmp_path, env=key_env) as service:
            assert service.wait(180) == 0, service.log()[-3000:]
            assert "sk-e2e-key" not in service.log()

        assert sub.wait_for(lambda: len(sub.on("sp/yard/captions")) >= 3, 20), [m.topic for m in sub.snapshot()]
        captions = [m.json() for m in sub.on("sp/yard/captions")]
        assert [c["segment"]["index"] for c in captions] == list(range(len(captions)))
        for caption in captions:
            assert caption["model"] == "tiny-remote" and caption["text"]
            assert caption["tokens"]["prompt"] > caption["tokens"]["visual"] > 0
            # the joint answer: at most the 8-token caption, the rule's 6-token verdict line and
            # the caption's label; more would mean max_tokens did not reach the server
            assert 1 <= caption["tokens"]["generated"] <= 8 + 6 + 4

        # One joint request per caption (the rule asked in it) reached the server, with the key.
        answered = re.findall(r"POST /v1/chat/completions 200 .*?images=(\d+)", server.log())
        assert len(answered) == len(captions)
        assert all(int(n) >= 2 for n in answered)  # each segment's frames went as images
        assert "sk-e2e-key" not in server.log()
