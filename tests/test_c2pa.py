"""C2PA content credentials: signing a LokiTalk output with a user-supplied chain, reading them back
in `verify`, catching tampering, and clean failures for bad or missing certificates."""

import json
from pathlib import Path

import pytest

from conftest import assert_clean_failure, run_cli
from lokitalk.errors import LokiTalkError
from lokitalk.media.video_writer import write_video
from lokitalk.provenance import Payload
from lokitalk.provenance import c2pa_sign
from lokitalk.provenance.c2pa_sign import (SignerConfig, has_c2pa_box, load_signer, make_test_chain, read_c2pa,
                                           sign_output)
from lokitalk.provenance.stamp import IPTC_TRAINED_ALGORITHMIC_MEDIA, manifest, manifest_tags, stamp_frames

pytest.importorskip("c2pa")

META = {"model_id": "model-c2pa-test", "preset": "tiny",
        "consent": {"consent_id": "consent-c2pa-test", "subject": "synthetic", "expires": None}}
SERIAL = 7


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> dict[str, Path]:
    return make_test_chain(tmp_path_factory.mktemp("certs"))


def stamped_video(path: Path) -> Path:
    """A small LokiTalk-like output: 64x64, 10 frames, watermark and MP4 manifest."""
    from test_watermark import textured_clip

    return write_video(path, stamp_frames(iter(textured_clip(10, 64)), META, SERIAL), 25.0,
                       metadata=manifest_tags(manifest(META, SERIAL, "render")))


@pytest.fixture
def signed(tmp_path, chain) -> Path:
    path = stamped_video(tmp_path / "out.mp4")
    summary = sign_output(path, META, SERIAL, load_signer(chain["chain"], chain["key"]), "render")
    assert summary == {"signed": True, "alg": "ES256", "signer": "LokiTalk test signer"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]  # no temporary left behind
    return path


def verify_json(capsys, *args) -> tuple[dict, str]:
    code, out, err = run_cli(["verify", *args], capsys)
    assert code in (0, None), err
    return json.loads(out.strip().splitlines()[-1]), out


def test_signed_output_verifies_with_source_type_model_and_consent(signed, chain, capsys):
    assert has_c2pa_box(signed)
    result, text = verify_json(capsys, signed)
    c2pa = result["c2pa"]
    assert c2pa["present"] and c2pa["valid"] and c2pa["validation_state"] == "Valid" and not c2pa["trusted"]
    assert c2pa["failures"] == []
    assert c2pa["digital_source_type"] == IPTC_TRAINED_ALGORITHMIC_MEDIA
    assert c2pa["model_id"] == META["model_id"] and c2pa["consent_id"] == META["consent"]["consent_id"]
    assert c2pa["serial"] == SERIAL and c2pa["software_agent"].startswith("lokitalk ")
    # signing kept the watermark and the MP4 manifest, and all three agree
    assert result["watermarked"] is True and result["payload"] == str(Payload.create(
        META["model_id"], META["consent"]["consent_id"], SERIAL))
    assert result["manifest"]["consent"]["consent_id"] == META["consent"]["consent_id"]
    assert result["manifest_matches_watermark"] is True
    assert result["c2pa_matches_manifest"] is True and result["c2pa_matches_watermark"] is True
    assert "C2PA: valid, trainedAlgorithmicMedia" in text
    # with the test root as trust anchor the signer is trusted
    trusted, _ = verify_json(capsys, signed, "--trust-anchors", chain["ca"])
    assert trusted["c2pa"]["validation_state"] == "Trusted" and trusted["c2pa"]["trusted"] is True


@pytest.mark.parametrize("where", ["mdat", "assertion"])
def test_byte_tampered_file_fails_validation(signed, tmp_path, capsys, where):
    data = bytearray(signed.read_bytes())
    if where == "mdat":  # a pixel byte of the video
        offset = data.index(b"mdat") + 400
    else:  # the consent id inside the signed assertion
        offset = data.index(META["consent"]["consent_id"].encode()) + 3
    data[offset] ^= 0x20
    tampered = tmp_path / "tampered.mp4"
    tampered.write_bytes(bytes(data))
    result, text = verify_json(capsys, tampered)
    c2pa = result["c2pa"]
    assert c2pa["present"] and c2pa["valid"] is False and c2pa["validation_state"] != "Valid"
    expected = "assertion.bmffHash.mismatch" if where == "mdat" else "assertion.hashedURI.mismatch"
    assert any(expected in failure for failure in c2pa["failures"]), c2pa["failures"]
    assert "C2PA: INVALID" in text


def test_unsigned_video_verifies_as_before(tmp_path, capsys):
    path = stamped_video(tmp_path / "plain.mp4")
    result, text = verify_json(capsys, path)
    assert result["c2pa"] == {"present": False, "checked": True}
    assert result["c2pa_matches_manifest"] is None and result["c2pa_matches_watermark"] is None
    assert result["watermarked"] is True and result["manifest_matches_watermark"] is True
    assert "C2PA: absent" in text


def test_without_c2pa_python_a_manifest_is_seen_but_not_validated(signed, monkeypatch):
    monkeypatch.setattr(c2pa_sign, "c2pa_available", lambda: False)
    found = read_c2pa(signed)
    assert found["present"] is True and found["checked"] is False and "c2pa-python" in found["note"]


def test_a_file_that_is_not_an_mp4_has_no_credentials(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 50)
    assert read_c2pa(junk)["present"] is False and not has_c2pa_box(junk)


def test_wrong_key_or_unusable_certificate_is_a_clear_error(chain, tmp_path):
    other = make_test_chain(tmp_path / "other")
    with pytest.raises(LokiTalkError, match="does not belong to the certificate"):
        load_signer(chain["chain"], other["key"])


def test_self_signed_certificate_is_refused(tmp_path):
    cert, key = _self_signed(tmp_path)
    with pytest.raises(LokiTalkError, match="self-signed") as info:
        load_signer(cert, key)
    assert "\n" not in str(info.value)


def test_failed_signing_removes_the_output_and_leaves_no_temporary(chain, tmp_path):
    path = stamped_video(tmp_path / "out.mp4")
    other = make_test_chain(tmp_path / "other")
    good = load_signer(chain["chain"], chain["key"])
    mismatched = SignerConfig(cert_pem=good.cert_pem, key_pem=(other["key"]).read_bytes(), alg="ES256",
                              common_name="x", cert_path=str(chain["chain"]))
    with pytest.raises(LokiTalkError, match="C2PA signing"):
        sign_output(path, META, SERIAL, mismatched)
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == []


def test_sign_output_without_signer_does_nothing(tmp_path):
    path = stamped_video(tmp_path / "out.mp4")
    before = path.read_bytes()
    assert sign_output(path, META, SERIAL, None) is None and path.read_bytes() == before


@pytest.mark.parametrize("case", ["missing cert", "missing key", "only cert", "missing cert from env", "evaluate"])
def test_render_with_bad_signing_options_fails_in_one_line_before_any_work(case, chain, tmp_path, capsys,
                                                                           monkeypatch):
    out = tmp_path / "out.mp4"
    model = tmp_path / "no-model-needed"  # the signer is checked before the model is loaded
    args = ["render", model, "--out", out]
    if case == "evaluate":
        args, case = ["evaluate", model], "missing cert"
    if case == "missing cert":
        args += ["--sign-cert", tmp_path / "nope.pem", "--sign-key", chain["key"]]
        needle = "certificate chain not found"
    elif case == "missing key":
        args += ["--sign-cert", chain["chain"], "--sign-key", tmp_path / "nope.key"]
        needle = "private key not found"
    elif case == "only cert":
        args += ["--sign-cert", chain["chain"]]
        needle = "needs both"
    else:
        monkeypatch.setenv("LOKITALK_C2PA_CERT", str(tmp_path / "nope.pem"))
        monkeypatch.setenv("LOKITALK_C2PA_KEY", str(chain["key"]))
        needle = "certificate chain not found"
    code, _, err = run_cli(args, capsys)
    assert_clean_failure(code, err, out, needle)
    assert [p.name for p in tmp_path.iterdir()] == []


def test_keygen_command(tmp_path, capsys):
    code, out, err = run_cli(["provenance", "keygen", "--out", tmp_path / "keys"], capsys)
    assert code in (0, None), err
    paths = json.loads(out.splitlines()[0])
    assert "TEST" in out and (Path(paths["key"]).stat().st_mode & 0o777) == 0o600
    assert load_signer(paths["chain"], paths["key"]).alg == "ES256"
    code, _, err = run_cli(["provenance", "keygen", "--out", tmp_path / "keys"], capsys)
    assert code not in (0, None) and "already holds" in err


def _self_signed(folder: Path) -> tuple[Path, Path]:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "self")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .sign(key, hashes.SHA256()))
    (folder / "self.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "self.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    return folder / "self.pem", folder / "self.key"


@pytest.mark.slow
def test_render_signs_its_output_end_to_end(chain, tmp_path_factory, capsys):
    """`render --sign-cert --sign-key` on a micro model: the output verifies with the model's ids."""
    pytest.importorskip("mediapipe")
    from dataclasses import replace

    from conftest import synthetic_avatar
    from lokitalk.train.trainer import train
    from test_trainer import micro_config

    root = tmp_path_factory.mktemp("render_c2pa")
    synthetic_avatar(root, 3.0, 128, 3)
    train(root / "avatar", root / "model", replace(micro_config(10), checkpoint_every=10), device="cpu",
          show_progress=False)
    out = root / "signed.mp4"
    code, stdout, err = run_cli(["render", root / "model", "--split", "train", "--max-frames", 3, "--out", out,
                                 "--sign-cert", chain["chain"], "--sign-key", chain["key"]], capsys)
    assert code in (0, None), err
    assert json.loads(stdout.strip().splitlines()[-1])["c2pa"]["signed"] is True
    meta = json.loads((root / "model" / "model.json").read_text())
    result, _ = verify_json(capsys, out, "--max-frames", 3)
    c2pa = result["c2pa"]
    assert c2pa["valid"] and c2pa["digital_source_type"] == IPTC_TRAINED_ALGORITHMIC_MEDIA
    assert c2pa["model_id"] == meta["model_id"] and c2pa["consent_id"] == meta["consent"]["consent_id"]
    assert c2pa["output"] == "render" and result["c2pa_matches_manifest"] is True
