"""Limits of portable players: a profile's `max_sample_rate` and `max_bit_depth` (issue 15).

A source above a limit is converted in the pipe (ffmpeg, encode.AudioPlan.converter); a
source at or under every limit passes unchanged: no converter in the pipe, so a FLAC
profile keeps its audio bit for bit. Pure: encode.plan_audio calls `apply` with the source's
stream info, and the converter takes `dither_filter`'s filter.

The rate a source is resampled to is the highest rate of its family (44.1 kHz: 44100 x 2^n,
48 kHz: 48000 x 2^n and its fractions) at or under the limit, so that 176.4 kHz goes to
88.2 or 44.1 kHz, never to 48; unless that rate is lower than the limit by more than the
step between the two families (48000/44100): then the limit itself, so that 192 kHz under a
44100 limit is 44100, not 32000. A bit depth above the limit is reduced with triangular
(TPDF) dither, as a mastering engineer would: truncation leaves quiet passages (fade-outs,
reverb tails) as distortion or silence.

As for `channels`, a conversion is said in the output's notes (report.json), naming the
profile's setting that asked for it.
"""
from __future__ import annotations

RATES_441 = (352800, 176400, 88200, 44100, 22050, 11025)
RATES_48 = (384000, 192000, 96000, 48000, 32000, 24000, 16000, 8000)


def limited_rate(rate: int, limit: int) -> int:
    """The rate a source of `rate` Hz gets under a profile's max_sample_rate `limit`."""
    if rate <= limit:
        return rate
    family = RATES_441 if rate % 11025 == 0 else RATES_48
    best = next((r for r in family if r <= limit), None)
    if best is not None and best * 48000 >= limit * 44100:
        return best
    return limit


def apply(plan, settings: dict, stream) -> None:
    """Lower `plan`'s rate and bits (an encode.AudioPlan, still at the source's rate) to the
    profile's limits in `settings`, with a note for each conversion."""
    limit = settings.get("max_sample_rate")
    if limit is not None and plan.rate > limit:
        before, plan.rate = plan.rate, limited_rate(plan.rate, limit)
        plan.notes.append(f"resampled {before} Hz to {plan.rate} Hz (the profile's max_sample_rate: {limit})")
    depth = settings.get("max_bit_depth")
    if depth is not None and plan.bits > depth:
        plan.notes.append(f"reduced {plan.bits}-bit samples to {depth} bits with dither "
                          f"(the profile's max_bit_depth: {depth})")
        plan.bits = depth
        plan.dither = True


LAYOUTS = {1: "mono", 2: "stereo"}


def dither_filter(rate: int, bits: int, channels: int | None = None) -> str:
    """ffmpeg's audio filter that resamples to `rate`, downmixes to `channels` (1 or 2, None:
    as they are) and reduces the samples to `bits` with triangular dither, in one step (the
    output format's own conversion after it would requantize without dither). ffmpeg holds
    24-bit samples as 32-bit ones: its dither is scaled to the 24-bit step."""
    fmt = "s16" if bits <= 16 else "s32"
    scale = 1 if bits <= 16 else 2 ** (32 - bits)
    parts = [f"osr={rate}", f"osf={fmt}", "dither_method=triangular"]
    if scale != 1:
        parts.append(f"dither_scale={scale}")
    if channels is not None:
        parts.append(f"ocl={LAYOUTS[channels]}")
    return "aresample=" + ":".join(parts)


def digest_view(settings: dict, audio: dict) -> dict:
    """`settings` as they enter an output's audio digest: a limit the source is under is
    left out (its output is the source's audio as it was), one it is over is replaced by what
    it makes of the source (the rate it is resampled to; the bit depth), so that changing a
    limit re-encodes exactly the outputs whose audio it changes. `audio` is the index's
    record of the source (its rate and bits); a limit stays as it is when they are unknown."""
    view = dict(settings)
    for field, have, make in (("max_sample_rate", audio.get("rate"), limited_rate),
                              ("max_bit_depth", audio.get("bits"), lambda bits, depth: depth)):
        limit = view.get(field)
        if limit is None or not isinstance(have, int) or isinstance(have, bool):
            continue
        view[field] = make(have, limit) if have > limit else None
    return view
