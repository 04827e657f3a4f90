"""Diagnostic probes written for past training stages, behind one runner (`training.probes.run`):

    python -m training.probes learn --kind basics/shape_single      # one kind learned alone
    python -m training.probes tokens --model DIR --json out.json    # what the media tokens carry
    python -m training.probes attention                             # where the LM looks
    python -m training.probes canvas                                # tokens and counts on larger canvases
    python -m training.probes sizes --task image/count_all          # accuracy by image size in tokens

Their findings are in docs/bench/ (probe, weak_kinds, objects, attend, buttons, canvas).
"""
