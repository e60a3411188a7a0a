"""Media I/O: probing and streaming video frames, writing mp4, loading and writing audio (all via PyAV)."""

from lokitalk.media.audio import SAMPLE_RATE, has_audio_stream, load_audio, write_wav
from lokitalk.media.video import VideoInfo, iter_frames, probe_video, read_frames
from lokitalk.media.video_writer import write_video

__all__ = [
    "SAMPLE_RATE",
    "VideoInfo",
    "has_audio_stream",
    "iter_frames",
    "load_audio",
    "probe_video",
    "read_frames",
    "write_video",
    "write_wav",
]
