"""C2PA content credentials on what LokiTalk writes (optional: needs `c2pa-python`, the `[c2pa]` extra).

A signed output carries, in the MP4 itself (a C2PA `uuid` box, hash-bound to the file's boxes):
- `c2pa.actions`: one `c2pa.created` action, `digitalSourceType`
  http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia, `softwareAgent`
  lokitalk <version>;
- `org.lokitalk.provenance`: model id and preset, consent id and expiry, the output's serial and the
  watermark tags, what wrote it (render, evaluate side-by-side, speak).
The signature uses the user's certificate chain and private key (PEM). Real deployments supply a
certificate from a CA (C2PA requires one issued for signing: key usage digitalSignature, an
extended key usage such as emailProtection or documentSigning, not self-signed); `make_test_chain`
(`lokitalk provenance keygen`) creates a throw-away test CA and signer, for tests only.

Usage from any command that writes a video (render, evaluate, speak):

    signer = load_signer(cert, key)          # before the expensive work: None when neither is given
    ... write_video(out, ..., metadata=...)  # the stamped, finished MP4
    if signer is not None:
        sign_output(out, meta, serial, signer, what="speak")

`read_c2pa(path)` reads and validates a file's credentials for `lokitalk verify`.
c2pa-python is imported lazily: without it, signing stops with a one-line error and reading
reports whether a manifest box is present without validating it.
"""

from __future__ import annotations

import datetime as dt
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..errors import ConfigError, InputError, LokiTalkError
from .payload import Payload
from .stamp import IPTC_TRAINED_ALGORITHMIC_MEDIA, payload_for

ASSERTION_LABEL = "org.lokitalk.provenance"
CERT_ENV = "LOKITALK_C2PA_CERT"
KEY_ENV = "LOKITALK_C2PA_KEY"
# the UUID of the ISO BMFF box that carries a C2PA manifest store (C2PA spec, "Embedding in BMFF")
C2PA_BOX_UUID = bytes.fromhex("d8fec3d61b0e483c92975828877ec481")
INSTALL_HINT = "C2PA needs c2pa-python: pip install 'c2pa-python==0.38.1' (or the lokitalk[c2pa] extra)"


def c2pa_module():
    """The c2pa package, or a one-line ConfigError saying how to install it."""
    try:
        import c2pa
    except ImportError:  # pragma: no cover - exercised on machines without the extra
        raise ConfigError(INSTALL_HINT) from None
    return c2pa


def c2pa_available() -> bool:
    try:
        c2pa_module()
    except ConfigError:
        return False
    return True


# --------------------------------------------------------------------------- signer


@dataclass(frozen=True)
class SignerConfig:
    """A checked certificate chain and private key (PEM bytes) and the C2PA algorithm they imply."""

    cert_pem: bytes
    key_pem: bytes
    alg: str  # ES256, ES384, ES512, PS256 or ED25519
    common_name: str
    cert_path: str = ""

    def signer(self):
        c2pa = c2pa_module()
        info = c2pa.C2paSignerInfo(self.alg.encode(), self.cert_pem, self.key_pem, None)
        return c2pa.Signer.from_info(info)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _read_pem(path: Path, what: str) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"C2PA {what} not found: {path}")
    data = path.read_bytes()
    if b"-----BEGIN" not in data:
        raise InputError(f"C2PA {what} {path} is not a PEM file")
    return data


def _algorithm(key) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(key, ec.EllipticCurvePrivateKey):
        algs = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
        if key.curve.name not in algs:
            raise InputError(f"C2PA signing supports EC keys on P-256/P-384/P-521, not {key.curve.name}")
        return algs[key.curve.name]
    if isinstance(key, rsa.RSAPrivateKey):
        return "PS256"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ED25519"
    raise InputError(f"C2PA signing needs an EC, RSA or Ed25519 private key, not {type(key).__name__}")


def load_signer(cert: str | Path | None = None, key: str | Path | None = None, check: bool = True
                ) -> SignerConfig | None:
    """The signer for `--sign-cert/--sign-key` (falling back to $LOKITALK_C2PA_CERT/$LOKITALK_C2PA_KEY).

    None when neither is given. Raises a one-line LokiTalkError when only one is given, a file is
    missing or unreadable, the key does not belong to the chain's first certificate, c2pa-python is
    not installed, or (with `check`) C2PA refuses to sign with them (a trial signature of a tiny
    MP4, ~50 ms): call it before rendering, so that nothing is computed or written in vain.
    """
    cert = cert if cert is not None else os.environ.get(CERT_ENV) or None
    key = key if key is not None else os.environ.get(KEY_ENV) or None
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ConfigError(f"C2PA signing needs both a certificate chain and a private key "
                          f"(--sign-cert/--sign-key or ${CERT_ENV}/${KEY_ENV})")
    cert_pem, key_pem = _read_pem(Path(cert), "certificate chain"), _read_pem(Path(key), "private key")
    c2pa_module()  # fail early, before any work, when the package is missing

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError as err:
        raise InputError(f"C2PA certificate chain {cert} is not readable: {_one_line(err)}") from None
    try:
        private = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise InputError(f"C2PA private key {key} is encrypted: supply it unencrypted (PEM, PKCS#8)") from None
    except ValueError as err:
        raise InputError(f"C2PA private key {key} is not readable: {_one_line(err)}") from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if private.public_key().public_bytes(*spki) != chain[0].public_key().public_bytes(*spki):
        raise InputError(f"C2PA private key {key} does not belong to the certificate {cert} "
                         f"(the first certificate of the chain must be the signer's)")
    if chain[0].issuer == chain[0].subject:
        raise InputError(f"C2PA certificate {cert} is self-signed: C2PA needs a signing certificate issued by "
                         f"a CA (`lokitalk provenance keygen` makes a test chain)")
    names = chain[0].subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    # C2PA wants PKCS#8 keys; re-serialise whatever PEM flavour was given (EC/RSA "traditional")
    key_pkcs8 = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
    config = SignerConfig(cert_pem=cert_pem, key_pem=key_pkcs8, alg=_algorithm(private),
                          common_name=str(names[0].value) if names else "", cert_path=str(cert))
    if check:
        _trial_sign(config)
    return config


def _trial_sign(config: SignerConfig) -> None:
    import numpy as np

    from ..media.video_writer import write_video

    with tempfile.TemporaryDirectory(prefix="lokitalk-c2pa-") as tmp:
        probe = write_video(Path(tmp) / "probe.mp4", iter([np.zeros((16, 16, 3), np.uint8)]), 25.0)
        _sign_file(probe, Path(tmp) / "probe.signed.mp4", {"claim_generator_info": _generator(),
                   "assertions": [_actions_assertion()]}, config)


def _signing_error(err: Exception, config: SignerConfig) -> LokiTalkError:
    text = _one_line(err)
    hint = ""
    if "self-signed" in text:
        hint = ": C2PA needs a signing certificate issued by a CA (`lokitalk provenance keygen` makes a test chain)"
    elif "does not match" in text:
        hint = ": the private key does not belong to the certificate"
    elif "certificate" in text.lower() or "Signature" in text:
        hint = (": C2PA requires key usage digitalSignature and an extended key usage such as "
                "emailProtection or documentSigning")
    return InputError(f"C2PA signing with {config.cert_path or 'the certificate'} failed ({text}){hint}")


# --------------------------------------------------------------------------- manifest and signing


def _generator() -> list[dict]:
    return [{"name": "LokiTalk", "version": __version__}]


def _actions_assertion() -> dict:
    return {"label": "c2pa.actions", "data": {"actions": [{
        "action": "c2pa.created",
        "digitalSourceType": IPTC_TRAINED_ALGORITHMIC_MEDIA,
        "softwareAgent": {"name": "lokitalk", "version": __version__},
        "description": "AI-generated: a LokiTalk neural rendering of a person, not a recording",
    }]}}


def build_manifest(meta: dict, serial: int, what: str, title: str = "lokitalk.mp4") -> dict:
    """The C2PA manifest definition (c2pa-python Builder JSON) for one output of model `meta`."""
    consent = meta.get("consent") or {}
    payload = payload_for(meta, serial)
    return {
        "claim_generator_info": _generator(),
        "title": title,
        "format": "video/mp4",
        "assertions": [
            _actions_assertion(),
            {"label": ASSERTION_LABEL, "data": {
                "model_id": meta.get("model_id"),
                "preset": meta.get("preset"),
                "consent_id": consent.get("consent_id"),
                "consent_expires": consent.get("expires"),
                "serial": int(serial),
                "output": what,
                "watermark": {"model_tag": payload.model_id, "consent_tag": payload.consent_id,
                              "serial": payload.serial},
            }},
        ],
    }


def _sign_file(source: Path, dest: Path, manifest: dict, config: SignerConfig) -> None:
    c2pa = c2pa_module()
    try:
        signer = config.signer()
        with c2pa.Builder(manifest) as builder, open(source, "rb") as src, open(dest, "w+b") as dst:
            builder.sign(signer, "video/mp4", src, dst)
    except c2pa.C2paError as err:
        raise _signing_error(err, config) from None


def sign_output(path: str | Path, meta: dict, serial: int, signer_config: SignerConfig | None,
                what: str = "render") -> dict | None:
    """Add C2PA content credentials to the finished MP4 at `path`, in place; the shared entry point
    for render, evaluate and speak.

    `meta` is the model's metadata (model.json: `model_id`, `preset`, `consent` block), `serial` the
    output's serial (the same one its watermark and MP4 manifest carry, from `stamp.next_serial`),
    `signer_config` what `load_signer` returned (None: nothing happens, returns None), `what` names
    the command ("render", "speak", "evaluate side-by-side"). The signed file is written beside
    `path` under a hidden name and renamed over it; on failure the unsigned file is removed too (a
    signed output was asked for) and a one-line LokiTalkError is raised. Returns a summary for
    the command's JSON output.
    """
    if signer_config is None:
        return None
    from ..media.files import partial_path

    path = Path(path)
    tmp = partial_path(path)
    try:
        _sign_file(path, tmp, build_manifest(meta, serial, what, title=path.name), signer_config)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        raise
    return {"signed": True, "alg": signer_config.alg, "signer": signer_config.common_name}


# --------------------------------------------------------------------------- reading


def has_c2pa_box(path: str | Path) -> bool:
    """Whether the MP4's top level holds a C2PA manifest box (no validation; no c2pa-python needed)."""
    try:
        with open(path, "rb") as handle:
            size_total = os.fstat(handle.fileno()).st_size
            offset = 0
            while offset + 8 <= size_total:
                handle.seek(offset)
                size, kind = struct.unpack(">I4s", handle.read(8))
                header = 8
                if size == 1:  # 64-bit size follows
                    size, header = struct.unpack(">Q", handle.read(8))[0], 16
                elif size == 0:  # to the end of the file
                    size = size_total - offset
                if kind == b"uuid" and handle.read(16) == C2PA_BOX_UUID:
                    return True
                if size < header:
                    return False
                offset += size
    except (OSError, struct.error):
        return False
    return False


def read_c2pa(path: str | Path, trust_anchors: str | Path | None = None) -> dict:
    """What the file's C2PA credentials say, validated.

    `present`: a manifest was found. `validation_state`: c2pa's Invalid / Valid (signature and hash
    binding check out; signer not on a trust list) / Trusted (and the signer chains to one of
    `trust_anchors`, a PEM file of root certificates). `valid`: Valid or Trusted. `failures`: the
    failed checks other than the untrusted signer (a tampered file reports e.g.
    assertion.bmffHash.mismatch). Then the digital source type, software agent, the LokiTalk
    assertion's model, consent and serial, and the signer. Without c2pa-python: `checked` false.
    """
    path = Path(path)
    if not c2pa_available():
        present = has_c2pa_box(path)
        return {"present": present, "checked": False,
                "note": INSTALL_HINT + (" to validate it" if present else "")}
    c2pa = c2pa_module()
    context = None
    if trust_anchors is not None:
        anchors = _read_pem(Path(trust_anchors), "trust anchors")
        context = c2pa.Context(settings=c2pa.Settings.from_dict(
            {"trust": {"trust_anchors": anchors.decode()}, "verify": {"verify_trust": True}}))
    try:
        with open(path, "rb") as stream:
            reader = c2pa.Reader("video/mp4", stream, context=context) if context else \
                c2pa.Reader("video/mp4", stream)
            with reader:
                state = reader.get_validation_state()
                results = reader.get_validation_results() or {}
                active = reader.get_active_manifest() or {}
    except c2pa.C2paError.ManifestNotFound:
        return {"present": False, "checked": True}
    except c2pa.C2paError as err:
        present = has_c2pa_box(path)
        return {"present": present, "checked": True, "valid": False, "validation_state": "Unreadable",
                "failures": [_one_line(err)]} if present else {"present": False, "checked": True,
                                                               "note": "not an MP4 that c2pa can parse"}
    failure_codes = [item.get("code") for item in (results.get("activeManifest") or {}).get("failure", [])]
    untrusted = "signingCredential.untrusted" in failure_codes
    found: dict = {"present": True, "checked": True, "validation_state": state,
                   "valid": state in ("Valid", "Trusted"), "trusted": state == "Trusted",
                   "failures": [code for code in failure_codes if code != "signingCredential.untrusted"]}
    if untrusted and trust_anchors is not None:
        found["failures"].append("signingCredential.untrusted")
    actions = []
    ours: dict = {}
    for assertion in active.get("assertions", []):
        label = assertion.get("label", "")
        if label.startswith("c2pa.actions"):
            actions.extend((assertion.get("data") or {}).get("actions", []))
        elif label == ASSERTION_LABEL:
            ours = assertion.get("data") or {}
    created = next((a for a in actions if a.get("action") == "c2pa.created"), {})
    agent = created.get("softwareAgent")
    signature = active.get("signature_info") or {}
    found.update({
        "digital_source_type": created.get("digitalSourceType"),
        "software_agent": (f"{agent.get('name')} {agent.get('version')}" if isinstance(agent, dict) else agent),
        "model_id": ours.get("model_id"),
        "consent_id": ours.get("consent_id"),
        "serial": ours.get("serial"),
        "output": ours.get("output"),
        "signer": {"common_name": signature.get("common_name"), "issuer": signature.get("issuer"),
                   "alg": signature.get("alg"), "time": signature.get("time")},
    })
    return found


def cross_check(c2pa_found: dict, manifest: dict | None, payload: Payload | None) -> dict:
    """Whether the C2PA assertion agrees with the MP4 manifest and the watermark (None: nothing to
    compare with)."""
    if not c2pa_found.get("present") or "model_id" not in c2pa_found:
        return {"c2pa_matches_manifest": None, "c2pa_matches_watermark": None}
    with_manifest = None
    if manifest is not None and "model" in manifest:
        with_manifest = (c2pa_found.get("model_id") == (manifest.get("model") or {}).get("model_id")
                         and c2pa_found.get("consent_id") == (manifest.get("consent") or {}).get("consent_id")
                         and c2pa_found.get("digital_source_type") == manifest.get("digitalSourceType"))
    with_mark = None
    if payload is not None:
        try:
            expected = Payload.create(c2pa_found.get("model_id") or "unknown-model",
                                      c2pa_found.get("consent_id") or "no-consent",
                                      int(c2pa_found.get("serial") or 0))
            with_mark = expected == payload
        except (TypeError, ValueError):
            with_mark = False
    return {"c2pa_matches_manifest": with_manifest, "c2pa_matches_watermark": with_mark}


def describe(found: dict, checks: dict | None = None) -> str:
    """One human-readable line about the C2PA credentials `read_c2pa` found."""
    if not found.get("present"):
        return "C2PA: absent" + (f" ({found['note']})" if found.get("note") else "")
    if not found.get("checked"):
        return f"C2PA: manifest present, not validated ({found.get('note')})"
    if not found.get("valid"):
        return f"C2PA: INVALID ({', '.join(found.get('failures') or []) or found.get('validation_state')})"
    source = (found.get("digital_source_type") or "no digital source type").rsplit("/", 1)[-1]
    signer = (found.get("signer") or {}).get("common_name")
    trust = "trusted signer" if found.get("trusted") else "signer not on a trust list (see --trust-anchors)"
    line = (f"C2PA: valid, {source}, by {found.get('software_agent')}, model {found.get('model_id')}, "
            f"consent {found.get('consent_id')}; signed by {signer!r}, {trust}")
    disagree = [name for name, value in (checks or {}).items() if value is False]
    if disagree:
        line += "; MISMATCH: " + ", ".join(disagree)
    return line


# --------------------------------------------------------------------------- test certificates


def make_test_chain(out_dir: str | Path, days: int = 365) -> dict[str, Path]:
    """FOR TESTS ONLY: a throw-away root CA and a signer certificate it issued, both ES256 (P-256),
    with the extensions C2PA requires. Writes `ca.pem` (the root: pass it to `verify
    --trust-anchors`), `chain.pem` (the signer's certificate: `--sign-cert`) and `signer.key` (its
    private key, PKCS#8, mode 0600: `--sign-key`). Real deployments use a certificate from a CA.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "LokiTalk TEST ONLY (not trusted)")])

    def usage(sign: bool, ca: bool) -> x509.KeyUsage:
        return x509.KeyUsage(digital_signature=sign, content_commitment=False, key_encipherment=False,
                             data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                             encipher_only=False, decipher_only=False)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (x509.CertificateBuilder().subject_name(name("LokiTalk test root CA")).issuer_name(
        name("LokiTalk test root CA")).public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(sign=False, ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(name("LokiTalk test signer")).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage(sign=True, ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {"ca": out_dir / "ca.pem", "chain": out_dir / "chain.pem", "key": out_dir / "signer.key"}
    paths["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths["chain"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_bytes = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    fd = os.open(paths["key"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_bytes)
    return paths
