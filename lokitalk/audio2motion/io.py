"""Saving and loading a trained Audio2Motion with its shared lip basis (one safetensors file).

The file holds the network's weights (`model.*`), the shared basis (`basis.*`), optionally the
log-mel statistics of its training audio (`audio_prior.*`: the prior of `lokitalk stream`'s
running normalisation), and in its metadata the network config and a free-form `info` dict
(what it was trained on, how). The
shipped model is `lokitalk/assets/audio2motion.safetensors`, built by
`tools/build_audio2motion.py`.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from ..errors import InputError
from ..prepare.signals import LipBasis
from .model import Audio2Motion, Audio2MotionConfig

FORMAT = "lokitalk-audio2motion/1"
SHIPPED = Path(__file__).resolve().parents[1] / "assets" / "audio2motion.safetensors"


def save_audio2motion(path: str | Path, model: Audio2Motion, basis: LipBasis, info: dict | None = None,
                      audio_prior: tuple[np.ndarray, np.ndarray] | None = None) -> Path:
    """Write weights, basis and config (and the training audio's log-mel statistics, the prior
    of a stream's running normalisation: `load_audio_prior`); the file appears only once complete."""
    path = Path(path)
    tensors = {f"model.{k}": v.detach().float().contiguous().cpu() for k, v in model.state_dict().items()}
    for key, value in basis.to_arrays().items():
        array = np.asarray(value)
        array = array.astype(np.int32) if array.dtype.kind in "iu" else array.astype(np.float32)
        tensors[f"basis.{key}"] = torch.from_numpy(np.ascontiguousarray(array))
    if audio_prior is not None:
        tensors["audio_prior.mean"] = torch.from_numpy(np.asarray(audio_prior[0], np.float32))
        tensors["audio_prior.var"] = torch.from_numpy(np.asarray(audio_prior[1], np.float32))
    metadata = {"format": FORMAT, "config": json.dumps(asdict(model.config)), "info": json.dumps(info or {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)
    return path


def load_audio2motion(path: str | Path | None = None) -> tuple[Audio2Motion, LipBasis, dict]:
    """(model in eval mode, shared basis, info) from `path` (default: the shipped model)."""
    path = Path(path) if path is not None else SHIPPED
    if not path.is_file():
        raise InputError(f"no Audio2Motion model at {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise InputError(f"{path} is not a readable Audio2Motion model ({err})") from None
    if metadata.get("format") != FORMAT:
        raise InputError(f"{path}: format {metadata.get('format')!r}, this LokiTalk reads {FORMAT}")
    config = Audio2MotionConfig(**json.loads(metadata["config"]))
    model = Audio2Motion(config)
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    model.eval()
    arrays = {k[len("basis."):]: v.numpy() for k, v in tensors.items() if k.startswith("basis.")}
    basis = LipBasis(arrays["point_ids"].astype(np.int32), arrays["neutral"].astype(np.float64),
                     arrays["components"].astype(np.float64), arrays["explained_variance"].astype(np.float64))
    return model, basis, json.loads(metadata.get("info", "{}"))


def load_audio_prior(path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """(per-band mean, per-band variance) of the log-mel of the audio the model at `path` (default:
    the shipped one) was trained on, or None if the file carries none."""
    path = Path(path) if path is not None else SHIPPED
    tensors = load_file(str(path))
    if "audio_prior.mean" not in tensors:
        return None
    return tensors["audio_prior.mean"].double().numpy(), tensors["audio_prior.var"].double().numpy()
