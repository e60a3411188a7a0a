"""The watermark payload and its channel coding.

Payload: 64 bits, big-endian, in this order:

| field        | bits | value                                                              |
|--------------|------|--------------------------------------------------------------------|
| `model_id`   | 24   | first 24 bits of SHA-256 of the model's identifier (or a given int) |
| `consent_id` | 24   | first 24 bits of SHA-256 of the consent record's id (or a given int)|
| `serial`     | 16   | the output's serial number modulo 2^16                             |

The ids are *tags*: a detector recovers the 24-bit tags, and whoever holds the model or consent
registry finds the record by computing `Payload.tag(id)` for its ids (one accidental collision
among 16.7 million). `Payload.create(model, consent, serial)` hashes strings and takes ints as
they are.

Coding, payload → channel bits:
1. CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) of the 8 payload bytes is appended: 80 bits. A
   decoded word whose CRC does not match is rejected; a random word passes with probability
   2^-16, which the detector multiplies by the pilot's own false-alarm rate (see watermark.py).
2. A rate-1/3 convolutional code, constraint length 7 (generators 133, 171, 165 octal, as in
   LTE), terminated with 6 zero tail bits: 86 inputs → 258 channel bits.

The decoder is soft-decision Viterbi: it takes one real number per channel bit (positive = 1,
magnitude = confidence). The watermark channel delivers many weak, Gaussian-like chip measurements,
where soft decisions are worth a lot: in a simulation of this channel (the same 384 Gaussian
chips for both codes, success rate of the whole payload), Reed-Solomon RS(16,10) over
GF(256) with hard decisions (reedsolo) needed about 1.5x the chip amplitude, i.e. 2.2x the
energy, of this code for the same payload and CRC. tests/test_watermark.py checks that soft
decoding of this code beats hard decoding of it.
`viterbi_decode` is vectorised over the 64 encoder states; `viterbi_decode_reference` is the plain
loop it is tested against.
"""

from __future__ import annotations

import binascii
import hashlib
from dataclasses import dataclass

import numpy as np

MODEL_BITS = 24
CONSENT_BITS = 24
SERIAL_BITS = 16
PAYLOAD_BITS = MODEL_BITS + CONSENT_BITS + SERIAL_BITS  # 64
CRC_BITS = 16
MESSAGE_BITS = PAYLOAD_BITS + CRC_BITS  # 80

CONSTRAINT = 7
GENERATORS = (0o133, 0o171, 0o165)
TAIL_BITS = CONSTRAINT - 1
CODED_BITS = (MESSAGE_BITS + TAIL_BITS) * len(GENERATORS)  # 258
_STATES = 1 << (CONSTRAINT - 1)


@dataclass(frozen=True)
class Payload:
    """What one watermark says: 24-bit model tag, 24-bit consent tag, 16-bit serial."""

    model_id: int
    consent_id: int
    serial: int

    def __post_init__(self) -> None:
        for name, bits in (("model_id", MODEL_BITS), ("consent_id", CONSENT_BITS), ("serial", SERIAL_BITS)):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or not 0 <= int(value) < (1 << bits):
                raise ValueError(f"{name} must be an int in [0, 2^{bits}), got {value!r}")

    @staticmethod
    def tag(identifier: str | int, bits: int = MODEL_BITS) -> int:
        """The `bits`-bit tag of an identifier: an int is taken as is (it must fit), a string hashed."""
        if isinstance(identifier, (int, np.integer)):
            if not 0 <= int(identifier) < (1 << bits):
                raise ValueError(f"id {identifier} does not fit in {bits} bits")
            return int(identifier)
        digest = hashlib.sha256(str(identifier).encode("utf-8")).digest()
        return int.from_bytes(digest[:4], "big") >> (32 - bits)

    @classmethod
    def create(cls, model: str | int, consent: str | int, serial: int) -> "Payload":
        """Payload from a model id and a consent id (strings are hashed to tags) and a serial (mod 2^16)."""
        return cls(
            model_id=cls.tag(model, MODEL_BITS),
            consent_id=cls.tag(consent, CONSENT_BITS),
            serial=int(serial) % (1 << SERIAL_BITS),
        )

    # ------------------------------------------------------------------ bits

    def to_int(self) -> int:
        return (
            (int(self.model_id) << (CONSENT_BITS + SERIAL_BITS))
            | (int(self.consent_id) << SERIAL_BITS)
            | int(self.serial)
        )

    @classmethod
    def from_int(cls, value: int) -> "Payload":
        return cls(
            model_id=(value >> (CONSENT_BITS + SERIAL_BITS)) & ((1 << MODEL_BITS) - 1),
            consent_id=(value >> SERIAL_BITS) & ((1 << CONSENT_BITS) - 1),
            serial=value & ((1 << SERIAL_BITS) - 1),
        )

    def to_bits(self) -> np.ndarray:
        """The 64 payload bits, most significant first (uint8 0/1)."""
        return int_to_bits(self.to_int(), PAYLOAD_BITS)

    @classmethod
    def from_bits(cls, bits: np.ndarray) -> "Payload":
        bits = np.asarray(bits)
        if bits.shape != (PAYLOAD_BITS,):
            raise ValueError(f"expected {PAYLOAD_BITS} bits, got shape {bits.shape}")
        return cls.from_int(bits_to_int(bits))

    def __str__(self) -> str:
        return f"model {self.model_id:06x}, consent {self.consent_id:06x}, serial {self.serial}"


# --------------------------------------------------------------------------- bit helpers


def int_to_bits(value: int, count: int) -> np.ndarray:
    return np.array([(value >> (count - 1 - i)) & 1 for i in range(count)], dtype=np.uint8)


def bits_to_int(bits: np.ndarray) -> int:
    value = 0
    for b in np.asarray(bits).astype(int):
        value = (value << 1) | int(b & 1)
    return value


def crc16(payload_bits: np.ndarray) -> np.ndarray:
    """CRC-16/CCITT-FALSE of the payload's bytes, as 16 bits."""
    data = bits_to_int(payload_bits).to_bytes(len(payload_bits) // 8, "big")
    return int_to_bits(binascii.crc_hqx(data, 0xFFFF), CRC_BITS)


def message_bits(payload: Payload) -> np.ndarray:
    """Payload bits followed by their CRC: 80 bits."""
    bits = payload.to_bits()
    return np.concatenate([bits, crc16(bits)])


def check_message(bits: np.ndarray) -> Payload | None:
    """The payload of an 80-bit message if its CRC matches, else None."""
    bits = np.asarray(bits, dtype=np.uint8)
    if not np.array_equal(crc16(bits[:PAYLOAD_BITS]), bits[PAYLOAD_BITS:MESSAGE_BITS]):
        return None
    return Payload.from_bits(bits[:PAYLOAD_BITS])


# --------------------------------------------------------------------------- convolutional code


def _parity(x: int) -> int:
    return bin(x).count("1") & 1


def _branch_tables() -> tuple[np.ndarray, np.ndarray]:
    """For each next state and each of its two predecessors: the predecessor and the output symbols.

    The register holds the input bit in its top bit (bit K-1) and the state (the previous K-1
    inputs, newest highest) below it; the next state is the register shifted right by one.
    """
    prev = np.zeros((_STATES, 2), dtype=np.int64)
    symbols = np.zeros((_STATES, 2, len(GENERATORS)), dtype=np.float64)
    for nxt in range(_STATES):
        bit = nxt >> (CONSTRAINT - 2)
        for j in range(2):
            state = ((nxt << 1) & (_STATES - 1)) | j
            register = (bit << (CONSTRAINT - 1)) | state
            prev[nxt, j] = state
            symbols[nxt, j] = [2 * _parity(register & g) - 1 for g in GENERATORS]
    return prev, symbols


_PREV, _SYMBOLS = _branch_tables()


def conv_encode(bits: np.ndarray) -> np.ndarray:
    """Rate-1/3, K=7 convolutional encoding with a zero tail: len(bits)+6 steps, 3 bits each."""
    state = 0
    out = []
    for b in list(np.asarray(bits, dtype=np.uint8)) + [0] * TAIL_BITS:
        register = (int(b) << (CONSTRAINT - 1)) | state
        out.extend(_parity(register & g) for g in GENERATORS)
        state = register >> 1
    return np.array(out, dtype=np.uint8)


def viterbi_decode(soft: np.ndarray) -> np.ndarray:
    """Maximum-likelihood input bits for soft channel values (positive = 1), terminated trellis.

    Vectorised over states: per step one gather, one add and one max over the two predecessors.
    """
    soft = np.asarray(soft, dtype=np.float64)
    n = len(GENERATORS)
    if soft.ndim != 1 or len(soft) % n:
        raise ValueError(f"soft values must be 1-D with a multiple of {n} entries, got {soft.shape}")
    steps = len(soft) // n
    metric = np.full(_STATES, -np.inf)
    metric[0] = 0.0
    choice = np.zeros((steps, _STATES), dtype=np.uint8)
    branch_all = _SYMBOLS @ soft.reshape(steps, n).T  # [states, 2, steps]
    for t in range(steps):
        candidates = metric[_PREV] + branch_all[:, :, t]
        pick = np.argmax(candidates, axis=1)
        choice[t] = pick
        metric = candidates[np.arange(_STATES), pick]
    state = 0  # the tail brings the encoder back to state 0
    bits = np.zeros(steps, dtype=np.uint8)
    for t in range(steps - 1, -1, -1):
        bits[t] = state >> (CONSTRAINT - 2)
        state = _PREV[state, choice[t, state]]
    return bits[: steps - TAIL_BITS]


def viterbi_decode_reference(soft: np.ndarray) -> np.ndarray:
    """The same decoder as a plain forward loop over states and input bits (slow; for tests)."""
    soft = [float(x) for x in np.asarray(soft)]
    n = len(GENERATORS)
    steps = len(soft) // n
    metric = [0.0] + [-np.inf] * (_STATES - 1)
    history: list[list[tuple[int, int]]] = []  # per step, per next state: (previous state, input bit)
    for t in range(steps):
        y = soft[t * n : (t + 1) * n]
        new = [-np.inf] * _STATES
        back = [(0, 0)] * _STATES
        for state in range(_STATES):
            if metric[state] == -np.inf:
                continue
            for bit in (0, 1):
                register = (bit << (CONSTRAINT - 1)) | state
                gain = sum(yk * (2 * _parity(register & g) - 1) for yk, g in zip(y, GENERATORS))
                nxt = register >> 1
                # states run upwards, so on a tie the predecessor with the lower low bit stays, as
                # np.argmax picks it
                if metric[state] + gain > new[nxt]:
                    new[nxt] = metric[state] + gain
                    back[nxt] = (state, bit)
        metric = new
        history.append(back)
    state, bits = 0, []
    for back in reversed(history):
        state, bit = back[state]
        bits.append(bit)
    return np.array(bits[::-1][: steps - TAIL_BITS], dtype=np.uint8)


def encode_payload(payload: Payload) -> np.ndarray:
    """The 258 channel bits (0/1) that carry `payload`."""
    return conv_encode(message_bits(payload))


def decode_payload(soft: np.ndarray) -> tuple[Payload | None, np.ndarray]:
    """(payload or None if the CRC fails, the 80 decoded message bits) from 258 soft values."""
    soft = np.asarray(soft, dtype=np.float64)
    if soft.shape != (CODED_BITS,):
        raise ValueError(f"expected {CODED_BITS} soft values, got shape {soft.shape}")
    bits = viterbi_decode(soft)
    return check_message(bits), bits
