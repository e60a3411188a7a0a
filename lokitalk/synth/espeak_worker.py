"""Speak one text with eSpeak NG (from the `espeakng-loader` wheel) in a process of its own.

Run as a script by `lokitalk.synth.tts` (never imported): eSpeak NG keeps state between
utterances inside its library (even across re-initialisation), so a fresh process per text is
what makes the same text give the same audio. Standard input: a JSON object {text, voice,
rate_wpm, pitch}; argv[1]: the file to write the 16-bit PCM to; standard output: a JSON object
{sample_rate, version, events: [[type, audio_position_ms, text_position, length, name], ...]}.
Exit status 3 when eSpeak NG is missing or fails (with the reason on standard error).
"""

import ctypes
import json
import sys

AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_PHONEME_EVENTS = 0x0001
INITIALIZE_DONT_EXIT = 0x8000
CHARS_UTF8 = 1
POS_CHARACTER = 1
PARAM_RATE, PARAM_VOLUME, PARAM_PITCH = 1, 2, 3
EVENT_LIST_TERMINATED, EVENT_WORD, EVENT_PHONEME = 0, 1, 7


class EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", EventId)]


CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(Event))


def fail(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.exit(3)


def main() -> None:
    request = json.loads(sys.stdin.read())
    try:
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        data = espeakng_loader.get_data_path()
    except (ImportError, OSError, RuntimeError) as err:
        fail(f"eSpeak NG is not installed ({err}); pip install espeakng-loader (scripts/setup.sh does)")
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetSynthCallback.argtypes = [CALLBACK]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                 ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    lib.espeak_Info.restype = ctypes.c_char_p
    lib.espeak_Info.argtypes = [ctypes.c_void_p]
    rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data.encode(),
                                 INITIALIZE_PHONEME_EVENTS | INITIALIZE_DONT_EXIT)
    if rate <= 0:
        fail(f"eSpeak NG would not start (data at {data})")
    chunks, events = [], []

    def on_audio(wav, count, evs):
        if count > 0 and wav:
            chunks.append(ctypes.string_at(wav, 2 * count))
        k = 0
        while evs[k].type != EVENT_LIST_TERMINATED:
            ev = evs[k]
            if ev.type in (EVENT_PHONEME, EVENT_WORD):
                name = ev.id.string.decode(errors="replace") if ev.type == EVENT_PHONEME else ""
                events.append([ev.type, ev.audio_position, ev.text_position, ev.length, name])
            k += 1
        return 0

    callback = CALLBACK(on_audio)
    lib.espeak_SetSynthCallback(callback)
    if lib.espeak_SetVoiceByName(request["voice"].encode()) != 0:
        fail(f"eSpeak NG has no voice {request['voice']!r}")
    lib.espeak_SetParameter(PARAM_RATE, int(request["rate_wpm"]), 0)
    lib.espeak_SetParameter(PARAM_PITCH, int(request["pitch"]), 0)
    lib.espeak_SetParameter(PARAM_VOLUME, 100, 0)
    text = request["text"].encode("utf-8") + b"\0"
    buf = ctypes.create_string_buffer(text)
    if lib.espeak_Synth(buf, len(text), 0, POS_CHARACTER, 0, CHARS_UTF8, None, None) != 0:
        fail("eSpeak NG failed to speak")
    lib.espeak_Synchronize()
    with open(sys.argv[1], "wb") as f:
        f.write(b"".join(chunks))
    version = (lib.espeak_Info(None) or b"?").decode(errors="replace").split()[0]
    sys.stdout.write(json.dumps({"sample_rate": rate, "version": version, "events": events}))


if __name__ == "__main__":
    main()
