"""The hold clip a caller hears while a browser agent is offered the call: a quiet two-note chime and
silence, as a WAV file the SIP media application's PlayAudio plays (16-bit PCM, mono, 8 kHz).

`rapport hold-audio` writes it to a file, to upload to the stack's hold-audio bucket; any other WAV of
that format can take its place (set HoldAudioSeconds to its length).
"""

from __future__ import annotations

import io
import math
import struct
import wave

SAMPLE_RATE = 8000
NOTES = ((659.25, 0.35), (880.0, 0.5))
"""E5, then A5: seconds each, at the start of every chime."""
CHIME_EVERY = 5.0
VOLUME = 0.18
"""Of full scale: a hold chime should be heard, not startle."""


def _sample(t: float) -> float:
    """The chime at `t` seconds into a period: each note with a soft attack and an exponential fade."""
    start = 0.0
    for frequency, length in NOTES:
        if start <= t < start + length:
            local = t - start
            envelope = min(1.0, local / 0.02) * math.exp(-4.0 * local / length)
            return VOLUME * envelope * math.sin(2 * math.pi * frequency * local)
        start += length
    return 0.0


def hold_clip(seconds: int = 10) -> bytes:
    """A WAV of `seconds` seconds: a chime every `CHIME_EVERY` seconds, silence in between."""
    if not 1 <= seconds <= 600:
        raise ValueError("a hold clip lasts 1 to 600 seconds")
    frames = bytearray()
    for index in range(seconds * SAMPLE_RATE):
        t = (index / SAMPLE_RATE) % CHIME_EVERY
        frames += struct.pack("<h", round(_sample(t) * 32767))
    out = io.BytesIO()
    with wave.open(out, "wb") as clip:
        clip.setnchannels(1)
        clip.setsampwidth(2)
        clip.setframerate(SAMPLE_RATE)
        clip.writeframes(bytes(frames))
    return out.getvalue()
