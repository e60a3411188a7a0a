"""Consent records: the person shown agreed, for this exact video, to these uses, until a date.

A record (`lokitalk-consent/1`, JSON) is bound to the source video by the SHA-256 of its bytes:
re-encoding, trimming or editing the video breaks the binding on purpose. `prepare`, `import-nerf`
and `train` refuse to work without a matching, unexpired record whose scope covers them; the
record's id travels into avatar.json, model.json and the summaries.

The optional `signature` is HMAC-SHA256, with a key file the user keeps, of the canonical JSON of
every other field. It proves that the record was made by someone holding that key and was not
edited since (the subject, scope or expiry cannot be changed without the key). It does not prove
who the person in the video is: that stays the responsibility of whoever creates the record.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterable

from ..errors import InputError

CONSENT_FORMAT = "lokitalk-consent/1"
PURPOSES = ("prepare", "train", "render", "speak")
SUFFIX = ".consent.json"


@dataclass(frozen=True)
class ConsentRecord:
    consent_id: str
    subject: str
    source_sha256: str
    source_name: str
    scope: tuple[str, ...] = PURPOSES
    created: str = ""  # ISO date
    expires: str | None = None  # ISO date (the last day the consent holds), or None
    signature: str | None = None  # HMAC-SHA256 hex of canonical_bytes(), or None
    format: str = CONSENT_FORMAT

    def canonical_bytes(self) -> bytes:
        """What the signature covers: every field except the signature, as sorted compact JSON."""
        data = asdict(self)
        data.pop("signature")
        data["scope"] = list(self.scope)
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    def sign(self, key: bytes) -> "ConsentRecord":
        return replace(self, signature=hmac.new(key, self.canonical_bytes(), hashlib.sha256).hexdigest())

    def signature_valid(self, key: bytes) -> bool:
        if not self.signature:
            return False
        expected = hmac.new(key, self.canonical_bytes(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, self.signature)

    def expired(self, today: dt.date | None = None) -> bool:
        return self.expires is not None and (today or dt.date.today()) > dt.date.fromisoformat(self.expires)

    def to_json(self) -> dict:
        data = asdict(self)
        data["scope"] = list(self.scope)
        return data

    def block(self) -> dict:
        """What travels into avatar.json / model.json: enough to re-check scope and expiry."""
        return {"consent_id": self.consent_id, "subject": self.subject, "source_sha256": self.source_sha256,
                "scope": list(self.scope), "created": self.created, "expires": self.expires,
                "signed": self.signature is not None}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def parse_scope(scope: str | Iterable[str] | None) -> tuple[str, ...]:
    if scope is None:
        return PURPOSES
    items = [s.strip() for s in (scope.split(",") if isinstance(scope, str) else scope) if s.strip()]
    unknown = [s for s in items if s not in PURPOSES]
    if unknown or not items:
        raise InputError(f"consent scope must be a comma-separated subset of {','.join(PURPOSES)}, "
                         f"not {','.join(items) or 'nothing'}")
    return tuple(p for p in PURPOSES if p in items)


def parse_date(value: str | dt.date | None, what: str = "--expires") -> str | None:
    if value is None or isinstance(value, dt.date):
        return None if value is None else value.isoformat()
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise InputError(f"{what} must be a date as YYYY-MM-DD, not {value!r}") from None


def read_key(path: Path) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such key file")
    key = path.read_bytes().strip()
    if not key:
        raise InputError(f"{path}: the key file is empty")
    return key


def default_consent_path(source: Path) -> Path:
    source = Path(source)
    return source.with_name(source.name + SUFFIX)


def create_consent(source: Path, subject: str, scope: str | Iterable[str] | None = None,
                   expires: str | dt.date | None = None, key: bytes | None = None,
                   today: dt.date | None = None) -> ConsentRecord:
    source = Path(source)
    if not source.is_file():
        raise InputError(f"{source}: no such video file" if not source.exists()
                         else f"{source} is a directory, not a video file")
    if not subject or not subject.strip():
        raise InputError("--subject must name the person shown")
    created = (today or dt.date.today()).isoformat()
    expires_iso = parse_date(expires)
    if expires_iso is not None and expires_iso < created:
        raise InputError(f"--expires {expires_iso} is before today ({created})")
    record = ConsentRecord(consent_id=uuid.uuid4().hex, subject=subject.strip(), source_sha256=sha256_file(source),
                           source_name=source.name, scope=parse_scope(scope), created=created,
                           expires=expires_iso)
    return record.sign(key) if key else record


def save_consent(record: ConsentRecord, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record.to_json(), indent=2) + "\n")
    tmp.replace(path)
    return path


def load_consent(path: Path) -> ConsentRecord:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such consent record file")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path} is not a readable consent record ({type(err).__name__})") from None
    if not isinstance(data, dict) or data.get("format") != CONSENT_FORMAT:
        raise InputError(f"{path} is not a LokiTalk consent record (format should be {CONSENT_FORMAT})")
    try:
        record = ConsentRecord(
            consent_id=str(data["consent_id"]), subject=str(data["subject"]),
            source_sha256=str(data["source_sha256"]), source_name=str(data["source_name"]),
            scope=tuple(data["scope"]), created=str(data["created"]), expires=data.get("expires"),
            signature=data.get("signature"))
        parse_scope(record.scope)
        parse_date(record.created, "created")
        if record.expires is not None:
            parse_date(record.expires, "expires")
    except (KeyError, TypeError, InputError) as err:
        raise InputError(f"{path} is a malformed consent record ({err})") from None
    return record


def require_consent(source: Path, purpose: str, consent_path: Path | None = None, today: dt.date | None = None,
                    key: bytes | None = None) -> ConsentRecord:
    """The record that allows `purpose` on `source`, or an InputError saying what is missing."""
    source = Path(source)
    path = Path(consent_path) if consent_path is not None else default_consent_path(source)
    if not path.is_file():
        where = "" if consent_path is None else f" ({path} does not exist)"
        raise InputError(f"no consent record for {source}{where}: the person shown must consent; create one with "
                         f"`lokitalk consent create --subject NAME --video {source}` (writes "
                         f"{default_consent_path(source)}) or pass --consent FILE")
    record = load_consent(path)
    if record.source_sha256 != sha256_file(source):
        raise InputError(f"consent record {path} is for a different file (content hash differs): was the video "
                         f"edited? create a new record for {source}")
    if record.expired(today):
        raise InputError(f"consent record {path} expired on {record.expires}: ask {record.subject} for a new "
                         "consent and create a new record")
    if purpose not in record.scope:
        raise InputError(f"consent record {path} does not cover {purpose!r} (its scope is "
                         f"{','.join(record.scope)})")
    if key is not None and not record.signature_valid(key):
        raise InputError(f"consent record {path} has " + ("no signature" if not record.signature else
                         "a bad signature: it was edited or signed with another key"))
    return record


def check_block(block: dict | None, purpose: str, where: str, today: dt.date | None = None) -> dict:
    """Re-check a consent block carried in avatar.json / model.json."""
    if not block or not block.get("consent_id"):
        raise InputError(f"{where} carries no consent record: prepare it again with a consent record "
                         "(`lokitalk consent create --subject NAME --video VIDEO`)")
    expires = block.get("expires")
    if expires is not None and (today or dt.date.today()) > dt.date.fromisoformat(expires):
        raise InputError(f"{where}: its consent ({block['consent_id']}) expired on {expires}")
    if purpose not in block.get("scope", ()):
        raise InputError(f"{where}: its consent ({block['consent_id']}) does not cover {purpose!r} "
                         f"(scope {','.join(block.get('scope', ())) or 'empty'})")
    return block
