"""The generated hold clip: the format PlayAudio plays, the length asked for, audible but quiet."""

from __future__ import annotations

import array
import io
import wave

import pytest
from rapport.hold_audio import hold_clip


def test_the_clip_is_8_khz_mono_16_bit_pcm_of_the_length_asked_for() -> None:
    with wave.open(io.BytesIO(hold_clip(10))) as clip:
        assert (clip.getnchannels(), clip.getsampwidth(), clip.getframerate()) == (1, 2, 8000)
        assert clip.getnframes() == 10 * 8000
        samples = array.array("h", clip.readframes(clip.getnframes()))
    loudest = max(abs(value) for value in samples)
    assert 0.1 * 32767 < loudest < 0.25 * 32767  # heard, not startling
    # Mostly silence between the chimes.
    assert sum(value == 0 for value in samples) > 0.7 * len(samples)


@pytest.mark.parametrize("seconds", [0, 601])
def test_a_clip_of_no_or_endless_length_is_refused(seconds: int) -> None:
    with pytest.raises(ValueError, match="1 to 600"):
        hold_clip(seconds)
