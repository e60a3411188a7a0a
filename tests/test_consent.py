"""Consent records: creation, signatures, the checks prepare and train make, and the id travelling
into avatar.json and model.json."""

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest

from conftest import consent_for
from lokitalk.errors import InputError
from lokitalk.provenance.consent import (CONSENT_FORMAT, PURPOSES, create_consent, default_consent_path,
                                         load_consent, require_consent, save_consent)


@pytest.fixture
def video(tmp_path) -> Path:
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"not really a video, but bytes with a hash" * 100)
    return path


def test_create_save_load_round_trip(video, tmp_path):
    record = create_consent(video, "Ada Lovelace", scope="train, prepare", expires="2999-01-02")
    assert record.format == CONSENT_FORMAT and len(record.consent_id) == 32
    assert record.scope == ("prepare", "train") and record.expires == "2999-01-02"
    assert record.source_name == "clip.mp4" and record.signature is None
    path = save_consent(record, default_consent_path(video))
    assert path == tmp_path / "clip.mp4.consent.json" and not path.with_name(path.name + ".tmp").exists()
    assert load_consent(path) == record
    assert create_consent(video, "Ada").scope == PURPOSES
    assert create_consent(video, "Ada").consent_id != record.consent_id


def test_bad_creation_arguments(video, tmp_path):
    with pytest.raises(InputError, match="scope"):
        create_consent(video, "Ada", scope="prepare,sell")
    with pytest.raises(InputError, match="YYYY-MM-DD"):
        create_consent(video, "Ada", expires="next week")
    with pytest.raises(InputError, match="before today"):
        create_consent(video, "Ada", expires="2001-01-01")
    with pytest.raises(InputError, match="no such"):
        create_consent(tmp_path / "nope.mp4", "Ada")


def test_malformed_records_are_one_line_errors(video, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not a readable consent record"):
        load_consent(bad)
    bad.write_text(json.dumps({"format": CONSENT_FORMAT, "subject": "x"}))
    with pytest.raises(InputError, match="malformed"):
        load_consent(bad)
    bad.write_text(json.dumps({"format": "something/else"}))
    with pytest.raises(InputError, match="not a LokiTalk consent record"):
        load_consent(bad)


def test_signature_verifies_and_detects_tampering(video, tmp_path):
    key = b"a secret only the studio holds"
    record = create_consent(video, "Ada", scope="prepare", key=key)
    assert record.signature and record.signature_valid(key) and not record.signature_valid(b"another key")
    path = save_consent(record, tmp_path / "signed.json")
    assert require_consent(video, "prepare", path, key=key) == record
    with pytest.raises(InputError, match="bad signature"):
        require_consent(video, "prepare", path, key=b"another key")
    edited = json.loads(path.read_text())
    edited["scope"] = list(PURPOSES)  # widen the scope without the key
    path.write_text(json.dumps(edited))
    assert not load_consent(path).signature_valid(key)
    with pytest.raises(InputError, match="bad signature"):
        require_consent(video, "train", path, key=key)
    unsigned = save_consent(create_consent(video, "Ada"), tmp_path / "unsigned.json")
    with pytest.raises(InputError, match="no signature"):
        require_consent(video, "prepare", unsigned, key=key)


def test_require_consent_errors(video, tmp_path):
    with pytest.raises(InputError, match="no consent record .*lokitalk consent create"):
        require_consent(video, "prepare")
    path = consent_for(video, expires="2030-06-30", scope="prepare,train")
    assert require_consent(video, "prepare").consent_id == load_consent(path).consent_id
    assert require_consent(video, "train", today=dt.date(2030, 6, 30))  # the last day still holds
    with pytest.raises(InputError, match="expired on 2030-06-30"):
        require_consent(video, "prepare", today=dt.date(2030, 7, 1))
    with pytest.raises(InputError, match="does not cover 'render'"):
        require_consent(video, "render")
    video.write_bytes(video.read_bytes() + b"!")
    with pytest.raises(InputError, match="content hash differs"):
        require_consent(video, "prepare")


# ----------------------------------------------------------------------------- avatar and model


@pytest.fixture(scope="module")
def avatar(tmp_path_factory):
    pytest.importorskip("mediapipe")
    from lokitalk.prepare.pipeline import prepare
    from lokitalk.prepare.runner import Reporter
    from lokitalk.synth import make_talking_clip, write_clip

    root = tmp_path_factory.mktemp("consent")
    video = write_clip(make_talking_clip(duration_s=3.0, size=96, seed=5), root / "clip.mp4")
    record = load_consent(consent_for(video, expires="2999-12-31"))
    summary = prepare(video, root / "avatar", reporter=Reporter(quiet=True))
    return root / "avatar", record, summary


def test_the_avatar_carries_the_consent(avatar):
    from lokitalk.data.avatar import load_avatar

    root, record, summary = avatar
    assert summary["consent_id"] == record.consent_id
    assert json.loads((root / "summary.json").read_text())["consent_id"] == record.consent_id
    block = json.loads((root / "avatar.json").read_text())["consent"]
    assert block["consent_id"] == record.consent_id and block["subject"] == record.subject
    assert block["source_sha256"] == record.source_sha256 and block["expires"] == "2999-12-31"
    assert block["scope"] == list(PURPOSES)
    assert load_avatar(root).consent == block


def test_a_new_record_reaches_the_cached_avatar(avatar, tmp_path):
    from lokitalk.prepare.pipeline import prepare
    from lokitalk.prepare.runner import Reporter

    root, record, _ = avatar
    copy = tmp_path / "avatar"
    shutil.copytree(root, copy)
    video = root.parent / "clip.mp4"
    other = consent_for(video, tmp_path / "renewed.json")
    summary = prepare(video, copy, reporter=Reporter(quiet=True), consent=other)
    assert summary["consent_id"] == load_consent(other).consent_id != record.consent_id
    assert json.loads((copy / "avatar.json").read_text())["consent"]["consent_id"] == summary["consent_id"]


def micro_config(steps=4):
    from lokitalk.model.deformation import DeformationConfig
    from lokitalk.model.encoding import TriPlaneConfig
    from lokitalk.model.field import FieldConfig, ModelConfig
    from lokitalk.train.config import TrainConfig

    grid = TriPlaneConfig(levels=3, features_per_level=2, base_resolution=8, max_resolution=32)
    model = ModelConfig(FieldConfig(grid=grid, hidden=16), DeformationConfig(hidden=16, signal_dim=8))
    return TrainConfig(preset="micro", model=model, steps=steps, rays_per_batch=128, samples_per_ray=8,
                       checkpoint_every=4, log_every=2, occupancy_warmup=2, occupancy_every=2,
                       occupancy_resolution=16)


def test_the_model_carries_the_consent(avatar, tmp_path):
    from lokitalk.train.trainer import train

    root, record, _ = avatar
    summary = train(root, tmp_path / "model", micro_config(), device="cpu", show_progress=False)
    assert summary["consent_id"] == record.consent_id
    model = json.loads((tmp_path / "model" / "model.json").read_text())
    assert model["consent"]["consent_id"] == record.consent_id and model["consent"]["subject"] == record.subject


def edited_copy(root: Path, target: Path, change) -> Path:
    shutil.copytree(root, target)
    meta = json.loads((target / "avatar.json").read_text())
    change(meta)
    (target / "avatar.json").write_text(json.dumps(meta))
    return target


@pytest.mark.parametrize("change, needle", [
    (lambda m: m["consent"].update(expires="2001-01-01"), "expired on 2001-01-01"),
    (lambda m: m["consent"].update(scope=["prepare", "render"]), "does not cover 'train'"),
    (lambda m: m.pop("consent"), "carries no consent record"),
])
def test_train_refuses_without_a_valid_consent(avatar, tmp_path, change, needle):
    from lokitalk.train.trainer import train

    root, _, _ = avatar
    copy = edited_copy(root, tmp_path / "avatar", change)
    with pytest.raises(InputError, match=needle):
        train(copy, tmp_path / "model", micro_config(), device="cpu", show_progress=False)
    assert not (tmp_path / "model").exists()
