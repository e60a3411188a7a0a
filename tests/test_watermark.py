"""The provenance watermark: payload coding, vectorised cores against their references, and the
embed -> attack -> detect round trip on synthetic textured frames and on one real clip."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from lokitalk.provenance import Payload, attacks, detect_frames, detect_video, embed_frames
from lokitalk.provenance import payload as pl
from lokitalk.provenance import watermark as wm

TRUTH = Payload.create("model:alice-v1", "consent:7f3a", 31337)


def textured_clip(frames: int = 64, size: int = 256, seed: int = 7) -> list[np.ndarray]:
    """A textured scene (smooth blobs plus fine grain) drifting slowly, with sensor noise per frame."""
    rng = np.random.default_rng(seed)
    coarse = cv2.resize(
        rng.uniform(30, 225, (12, 12, 3)).astype(np.float32),
        (size + 32, size + 32),
        interpolation=cv2.INTER_CUBIC,
    )
    fine = cv2.GaussianBlur(rng.normal(0, 12, (size + 32, size + 32, 3)).astype(np.float32), (0, 0), 1.0)
    scene = coarse + fine
    out = []
    for i in range(frames):
        dx, dy = (i // 4) % 16, (i // 8) % 8
        view = scene[dy : dy + size, dx : dx + size] + rng.normal(0, 1.5, (size, size, 3))
        out.append(np.clip(np.rint(view), 0, 255).astype(np.uint8))
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(255.0**2 / float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


@pytest.fixture(scope="module")
def clean() -> list[np.ndarray]:
    return textured_clip()


@pytest.fixture(scope="module")
def written(clean) -> list[np.ndarray]:
    """Watermarked and stored as LokiTalk stores its output: H.264 at CRF 18."""
    return attacks.reencode_h264(list(embed_frames(clean, TRUTH)), 18)


# --------------------------------------------------------------------------- payload and coding


def test_payload_bits_round_trip():
    p = Payload(model_id=0xABCDEF, consent_id=0x123456, serial=0xBEEF)
    bits = p.to_bits()
    assert bits.shape == (64,) and set(np.unique(bits)) <= {0, 1}
    assert Payload.from_bits(bits) == p
    assert Payload.from_int(p.to_int()) == p
    assert p.to_int() == 0xABCDEF123456BEEF
    # strings hash to stable 24-bit tags; ints are taken as they are
    assert Payload.create("m", "c", 70000) == Payload(Payload.tag("m"), Payload.tag("c"), 70000 % 65536)
    assert Payload.tag("m") == int.from_bytes(__import__("hashlib").sha256(b"m").digest()[:3], "big")
    assert Payload.create(5, 6, 7) == Payload(5, 6, 7)
    with pytest.raises(ValueError):
        Payload(1 << 24, 0, 0)
    with pytest.raises(ValueError):
        Payload(0, 0, -1)


def test_channel_code_corrects_bit_errors():
    coded = pl.encode_payload(TRUTH)
    assert coded.shape == (pl.CODED_BITS,)
    soft = 2.0 * coded - 1.0
    assert pl.decode_payload(soft)[0] == TRUTH
    rng = np.random.default_rng(0)
    # 11 hard errors, one every 25 channel bits (about 4 %): corrected
    damaged = soft.copy()
    damaged[np.arange(5, pl.CODED_BITS, 25)] *= -1
    assert pl.decode_payload(damaged)[0] == TRUTH
    # Gaussian noise at the operating point (per-bit SNR ~ 1.4): still decoded
    noisy = 1.4 * soft + rng.normal(size=soft.shape)
    assert pl.decode_payload(noisy)[0] == TRUTH


def test_crc_rejects_a_wrong_message():
    message = pl.message_bits(TRUTH)
    assert pl.check_message(message) == TRUTH
    for i in (0, 40, 63, 70):
        wrong = message.copy()
        wrong[i] ^= 1
        assert pl.check_message(wrong) is None
    # noise alone almost never decodes to a valid payload (2^-16 per try)
    rng = np.random.default_rng(1)
    assert all(pl.decode_payload(rng.normal(size=pl.CODED_BITS))[0] is None for _ in range(200))


def test_viterbi_matches_reference():
    rng = np.random.default_rng(2)
    for trial in range(6):
        soft = rng.normal(size=pl.CODED_BITS) + (
            0.8 * (2.0 * pl.encode_payload(TRUTH) - 1) if trial % 2 else 0
        )
        assert np.array_equal(pl.viterbi_decode(soft), pl.viterbi_decode_reference(soft))


def test_soft_decoding_beats_hard_decoding():
    rng = np.random.default_rng(3)
    symbols = 2.0 * pl.encode_payload(TRUTH) - 1
    soft_ok = hard_ok = 0
    for _ in range(60):
        y = 1.0 * symbols + rng.normal(size=symbols.shape)
        soft_ok += pl.decode_payload(y)[0] == TRUTH
        hard_ok += pl.decode_payload(np.sign(y))[0] == TRUTH
    assert soft_ok >= 54 and soft_ok > hard_ok + 20


# --------------------------------------------------------------------------- vectorised cores


def test_fold_matches_reference():
    rng = np.random.default_rng(4)
    image = rng.normal(size=(37, 53))
    for chip in (1.7, 2.0, 3.33):
        assert np.allclose(wm.fold(image, chip), wm.fold_reference(image, chip))


def test_rendered_pattern_matches_reference():
    signs = wm.layout_for().chip_signs(pl.encode_payload(TRUTH))
    fast = wm.render_pattern(signs, 96, 120)
    slow = wm.render_pattern_reference(signs, 96, 120)
    # the fast path interpolates a tile sampled 8 times per chip: agreement to a few per cent
    assert np.sqrt(np.mean((fast - slow) ** 2)) < 0.05 * np.sqrt(np.mean(slow**2))
    assert np.corrcoef(fast.ravel(), slow.ravel())[0, 1] > 0.998


def test_embedding_touches_luma_only():
    frame = textured_clip(1, 128)[0]
    marked = next(embed_frames([frame], TRUTH))
    delta = marked.astype(int) - frame.astype(int)
    unclipped = (frame > 5).all(axis=2) & (frame < 250).all(axis=2)
    # the same change on R, G and B wherever nothing clips: chroma untouched
    assert (np.ptp(delta[unclipped], axis=1) <= 1).mean() > 0.99
    assert np.abs(delta).max() > 0


# --------------------------------------------------------------------------- round trips


def test_invisible_psnr_at_least_40db(clean):
    marked = list(embed_frames(clean, TRUTH))
    values = [psnr(m, c) for m, c in zip(marked, clean)]
    assert min(values) >= 40.0


ATTACKS = {
    "crf18 as written": lambda f: f,
    "crf23": lambda f: attacks.reencode_h264(f, 23),
    "crf28": lambda f: attacks.reencode_h264(f, 28),
    "half size": lambda f: attacks.reencode_h264(attacks.downscale_half(f), 18),
    "crop 10% centre": lambda f: attacks.reencode_h264(attacks.crop_fraction(f, 0.1, "center"), 18),
    "crop 10% corner": lambda f: attacks.reencode_h264(attacks.crop_fraction(f, 0.1, "top-right"), 18),
    "middle 1 s": lambda f: attacks.reencode_h264(attacks.middle_clip(f, 1.0, 25.0), 18),
    "crop + crf28": lambda f: attacks.reencode_h264(attacks.crop_fraction(f, 0.1, "bottom-left"), 28),
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_payload_recovered_after_attack(written, name):
    frames = ATTACKS[name](written)
    detection = detect_frames(frames)
    assert detection.watermarked, detection.summary()
    assert detection.payload == TRUTH, detection.summary()
    assert detection.frames_used == len(frames)
    if name.startswith("crop"):
        assert 1.08 < detection.scale < 1.14  # the 10 % crop is seen as an 11 % larger tile


def test_clean_frames_are_not_flagged(clean):
    for frames in (clean, attacks.reencode_h264(clean, 23)):
        detection = detect_frames(frames)
        assert not detection.watermarked and detection.payload is None
        assert detection.score < wm.Z_DETECT - 2


def test_wrong_key_does_not_detect(written):
    detection = detect_frames(written, key="someone else's key")
    assert not detection.watermarked and detection.payload is None
    assert detect_frames(written).score > detection.score + 3


def test_other_payload_other_result(clean):
    other = Payload(TRUTH.model_id, TRUTH.consent_id, (TRUTH.serial + 1) % 65536)
    detection = detect_frames(embed_frames(clean[:24], other))
    assert detection.payload == other


def test_detect_video_reads_a_written_file(tmp_path, clean):
    from lokitalk.media.video_writer import write_video

    path = write_video(tmp_path / "marked.mp4", embed_frames(clean[:40], TRUTH), 25.0, crf=18)
    detection = detect_video(path, max_frames=20)
    assert detection.payload == TRUTH and detection.frames_used == 20


def test_attack_helpers_shapes():
    frames = textured_clip(10, 64)
    assert [f.shape for f in attacks.downscale_half(frames[:1])] == [(32, 32, 3)]
    assert attacks.crop_box(100, 200, 0.1, "center") == (5, 10, 90, 180)
    assert attacks.crop_box(100, 200, 0.1, "bottom-right") == (10, 20, 90, 180)
    assert len(attacks.middle_clip(frames, 0.2, 25.0)) == 5
    assert attacks.middle_clip(frames, 0.2, 25.0)[0] is frames[2]
    odd = [f[:63, :61] for f in frames]
    out = attacks.reencode_h264(odd, 23)
    assert len(out) == 10 and out[0].shape == (63, 61, 3)
    assert psnr(out[5], odd[5]) > 25


# --------------------------------------------------------------------------- real footage


@pytest.mark.real_data
def test_real_clip_payload_survives_and_clean_is_not_flagged():
    from conftest import shared_file
    from lokitalk.media.video import iter_frames, probe_video

    path = shared_file("videos/id01_a.mp4")
    fps = probe_video(path).fps
    clean = [f for _, f in zip(range(int(4 * fps)), iter_frames(path, fps=fps))]
    assert not detect_frames(clean).watermarked
    marked = list(embed_frames(clean, TRUTH))
    assert min(psnr(m, c) for m, c in zip(marked, clean)) >= 40.0
    written = attacks.reencode_h264(marked, 18, fps=fps)
    for name in ("crf28", "half size", "crop 10% corner", "crop + crf28"):
        detection = detect_frames(ATTACKS[name](written))
        assert detection.payload == TRUTH, f"{name}: {detection.summary()}"
    clip = attacks.reencode_h264(attacks.middle_clip(written, 2.0, fps), 23, fps=fps)
    assert detect_frames(clip).payload == TRUTH


def test_verify_command_reports_clean_and_marked_videos(tmp_path, capsys):
    import json as _json

    from lokitalk.media.video_writer import write_video
    from lokitalk.provenance import Payload, embed_frames

    frames = textured_clip(frames=48, size=160, seed=3)
    clean = write_video(tmp_path / "clean.mp4", frames, 25.0)
    marked = write_video(tmp_path / "marked.mp4", embed_frames(frames, Payload.create("m1", "c1", 7)),
                         25.0)
    from conftest import run_cli

    results = {}
    for name, path in (("clean", clean), ("marked", marked)):
        code, out, _ = run_cli(["verify", path], capsys)
        assert code in (0, None)
        results[name] = _json.loads(out.strip().splitlines()[-1])
    assert results["clean"]["watermarked"] is False
    assert results["marked"]["watermarked"] is True and results["marked"]["payload"] is not None
