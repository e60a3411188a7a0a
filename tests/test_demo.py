"""`lokitalk demo`: the step cache (fast, with stand-in steps) and the real pipeline at a
miniature setting (slow: ~30-60 s on an idle 2-core CPU; marked `slow`)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from conftest import run_cli
from lokitalk.demo import STEPS, DemoConfig, miniature, run_demo
from lokitalk.demo import pipeline
from lokitalk.demo.truth import lip_sync, match_blinks


# --------------------------------------------------------------------------- the step cache


@pytest.fixture
def fake_steps(monkeypatch):
    """Stand-in steps that record that they ran; the report step writes metrics.json as the real one."""
    ran: list[str] = []

    def make(name):
        def step(out, config, device, results, show):
            ran.append(name)
            if name == "report":
                (out / "metrics.json").write_text(json.dumps({"steps": results}))
            return {"ran": name}
        return step

    monkeypatch.setattr(pipeline, "_STEP_FUNCTIONS", {name: make(name) for name in STEPS})
    return ran


def test_finished_steps_are_not_redone(tmp_path, fake_steps):
    run_demo(tmp_path, DemoConfig(device="cpu"), quiet=True)
    assert fake_steps == list(STEPS)
    fake_steps.clear()
    metrics = run_demo(tmp_path, DemoConfig(device="cpu"), quiet=True)
    assert fake_steps == ["report"]  # only the report is rewritten
    assert set(metrics["steps"]) == set(STEPS) - {"report"}


def test_a_changed_setting_redoes_its_step_and_the_later_ones(tmp_path, fake_steps):
    run_demo(tmp_path, DemoConfig(device="cpu", steps=100), quiet=True)
    fake_steps.clear()
    run_demo(tmp_path, DemoConfig(device="cpu", steps=200), quiet=True)
    assert fake_steps == ["train", "calibrate", "speak", "evaluate", "check", "verify", "report"]
    fake_steps.clear()
    run_demo(tmp_path, DemoConfig(device="cpu", steps=200, sentence="Something else."), quiet=True)
    assert fake_steps == list(STEPS)


def test_a_failed_step_is_redone_next_time(tmp_path, fake_steps, monkeypatch):
    steps = dict(pipeline._STEP_FUNCTIONS)

    def broken(*args):
        raise KeyboardInterrupt

    monkeypatch.setitem(pipeline._STEP_FUNCTIONS, "speak", broken)
    with pytest.raises(KeyboardInterrupt):
        run_demo(tmp_path, DemoConfig(device="cpu"), quiet=True)
    monkeypatch.setitem(pipeline._STEP_FUNCTIONS, "speak", steps["speak"])
    fake_steps.clear()
    run_demo(tmp_path, DemoConfig(device="cpu"), quiet=True)
    assert fake_steps == ["speak", "evaluate", "check", "verify", "report"]


def test_cli_rejects_bad_options(tmp_path, capsys):
    code, _, err = run_cli(["demo", "--out", tmp_path / "d", "--steps", "0"], capsys)
    assert code not in (0, None) and err.startswith("error: ") and "--steps" in err
    code, _, err = run_cli(["demo", "--out", tmp_path / "d", "--preset", "huge"], capsys)
    assert code not in (0, None) and "--preset" in err
    assert not (tmp_path / "d").exists()


# --------------------------------------------------------------------------- ground-truth measures


def test_blink_matching():
    truth = [(10, 14), (50, 53), (90, 95)]
    assert match_blinks(truth, truth) | {} == {"true_blinks": 3, "detected_blinks": 3, "precision": 1.0,
                                              "recall": 1.0, "tolerance_frames": 1}
    found = [(15, 16), (70, 72)]  # one a frame late (matches with the tolerance), one spurious
    result = match_blinks(truth, found)
    assert result["precision"] == 0.5 and result["recall"] == pytest.approx(1 / 3)
    assert match_blinks([], [])["precision"] == 1.0 and match_blinks(truth, [])["recall"] == 0.0


def test_lip_sync_finds_the_lag():
    rng = np.random.default_rng(0)
    truth = np.convolve(rng.random(200), np.ones(5) / 5, mode="same")
    late = np.concatenate([np.full(2, truth[0]), truth[:-2]])  # the video's mouth moves 2 frames late
    result = lip_sync(late, truth)
    assert result["best_lag_frames"] == 2 and result["best_r"] > 0.99 > result["r"]
    noisy = late.copy()
    noisy[::7] = np.nan  # frames where no face was found are left out
    assert lip_sync(noisy, truth)["frames"] < 200
    assert math.isnan(lip_sync(np.full(50, np.nan), truth[:50])["r"])


# --------------------------------------------------------------------------- the real thing, small


@pytest.mark.slow
def test_miniature_demo_runs_the_real_pipeline(tmp_path):
    """subject -> prepare -> train (20 steps) -> speak -> evaluate -> check -> verify -> report, on a
    160 px subject saying two short sentences. Checks the report's files and that its numbers are
    real measurements (not the quality: 20 steps render a blur)."""
    pytest.importorskip("mediapipe")
    out = tmp_path / "demo"
    metrics = run_demo(out, miniature(DemoConfig(device="cpu")), quiet=True)
    steps = metrics["steps"]
    report = out / "report"
    for name in ("index.html", "training_curve.png", "spoken_frames.png", "mouth_track.png",
                 "contact_sheet.png", "spoken.mp4"):
        assert (report / name).stat().st_size > 1000, name
    page = (report / "index.html").read_text()
    assert "Say hello to the camera." in page and "LokiTalk watermark" in page
    assert json.loads((out / "metrics.json").read_text())["steps"]["train"]["steps"] == 20

    # the subject and prepare, against the ground truth
    assert steps["subject"]["frames"] == steps["prepare"]["frames"] > 100
    truth = steps["check"]["prepare_vs_truth"]
    assert truth["pose_error_deg"]["mean"] < 1.0 and truth["blinks"]["recall"] == 1.0
    assert truth["mouth_correlation"] > 0.8
    # evaluate and the lip-sync check produced real numbers
    assert 5.0 < steps["evaluate"]["psnr"] < 60.0 and steps["evaluate"]["baselines"]["mean_image_psnr"] > 5.0
    views = [steps["evaluate"]["views"][k] for k in ("seen_views", "novel_views")]  # they split the test frames
    assert sum(v["frames"] for v in views) == steps["evaluate"]["frames"]
    assert sum(v["frames"] * v["psnr"] for v in views if v["frames"]) / steps["evaluate"]["frames"] \
        == pytest.approx(steps["evaluate"]["psnr"], abs=1e-9)
    assert steps["check"]["lip_sync"]["reference_vs_truth"]["r"] > 0.6  # the face mesh reads the truth
    assert steps["speak"]["frames"] == int(round(steps["subject"]["sentence_s"] * 25))
    # the output is stamped, and verify reads it back
    assert steps["verify"]["watermarked"] and steps["verify"]["manifest_matches_watermark"]

    # a second run only rewrites the report
    ran = []
    run_demo(out, miniature(DemoConfig(device="cpu")), quiet=True, on_step=ran.append)
    assert ran == ["report"]
