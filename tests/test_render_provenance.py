"""Every video `render` writes is stamped: watermark and manifest name the model and the consent."""

import json

import pytest

from conftest import micro_model, run_cli
from lokitalk.provenance import Payload

pytest.importorskip("mediapipe")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return micro_model(tmp_path_factory.mktemp("stamp"), 4.0, 160, 9, steps=30)


def test_rendered_video_carries_watermark_and_manifest(model, capsys):
    out = model / "render.mp4"
    code, _, err = run_cli(["render", model / "model", "--split", "train", "--max-frames", 60, "--out", out], capsys)
    assert code in (0, None), err
    meta = json.loads((model / "model" / "model.json").read_text())
    code, stdout, _ = run_cli(["verify", out], capsys)
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["watermarked"] is True
    expected = Payload.create(meta["model_id"], meta["consent"]["consent_id"], 1)
    assert result["payload"] == str(expected)
    assert result["manifest"]["digitalSourceType"].endswith("trainedAlgorithmicMedia")
    assert result["manifest"]["consent"]["consent_id"] == meta["consent"]["consent_id"]
    assert result["manifest_matches_watermark"] is True


def test_render_refuses_a_model_whose_consent_does_not_cover_rendering(model, capsys, tmp_path):
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(model / "model", copy)
    meta = json.loads((copy / "model.json").read_text())
    meta["consent"]["scope"] = ["prepare", "train"]
    (copy / "model.json").write_text(json.dumps(meta))
    code, _, err = run_cli(["render", copy, "--out", tmp_path / "x.mp4"], capsys)
    assert code not in (0, None) and "does not cover 'render'" in err
    assert not (tmp_path / "x.mp4").exists()
