#!/usr/bin/env bash
# The bundled model's curricula: each phase a fresh warm-up + cosine, on its own mix.
#   bash training/curriculum.sh OUT [python]                       # CPU plan: 47.5 min on 2 cores, batch 16
#   PLAN=gpu DEVICE=cuda bash training/curriculum.sh OUT python3    # GPU plan: 9.3 min, batch 128
#   PLAN=refine INIT=GPU_EXPORT bash training/curriculum.sh OUT     # then 80 CPU min with aux heads
#   PLAN=weak INIT=REFINE_RUN bash training/curriculum.sh OUT       # then 100 more on the weak kinds
#   PLAN=click INIT=WEAK_EXPORT bash training/curriculum.sh OUT     # then 82 more: kinds learned alone
#   PLAN=objects INIT=CLICK_EXPORT bash training/curriculum.sh OUT  # then 89 more: per-token targets
#   PLAN=attend INIT=OBJECTS_EXPORT bash training/curriculum.sh OUT # then 90 more: attention targets
#   PLAN=buttons INIT=ATTEND_EXPORT bash training/curriculum.sh OUT # then 47 more: button labels, counts
#   PLAN=canvas INIT=BUTTONS_EXPORT bash training/curriculum.sh OUT # then 35 more: canvas twins
#   PLAN=phrasing INIT=mm_model/bundled/tiny bash training/curriculum.sh OUT  # then 111 more: people's wordings
#   PLAN=people INIT=mm_model/bundled/tiny bash training/curriculum.sh OUT    # then 80 more: unknown words, small text
#   PLAN=thinking INIT=mm_model/bundled/tiny bash training/curriculum.sh OUT  # enumeration traces (not in the bundle)
# The bundled weights are gpu -> refine -> weak -> click -> objects -> attend -> buttons -> canvas -> phrasing -> people: all but weak started
# from the previous run's export (`python -m training.train --out RUN --export DIR`), weak continued the
# refine run itself.
# Environment: PLAN (cpu|gpu|refine|weak|click|objects|attend|buttons|canvas|phrasing|people|thinking), INIT (where a refinement starts: exported
# weights, with a fresh optimizer and aux heads, or a training run, whose checkpoint OUT continues: aux
# heads and optimizer moments), DEVICE, BATCH, LR (the peak a phase's factor multiplies), SCALE (x phase
# minutes), THREADS, WORKERS, AFTER_PHASE (a command run with OUT after each phase), FLAGS (train.py
# flags added to every phase, e.g. FLAGS="--aux-weight 1 --object-weight 1 --attend-weight 1").
# A phase is "mix minutes lr-factor [train.py flags]"; a repeated mix starts a new phase (--new-phase).
set -euo pipefail
out=${1:-training/runs/main}
py=${2:-python}
plan=${PLAN:-cpu}
every=()  # flags for every phase of the plan
# the whole task set with both counting kinds weighted up: the last mix of buttons, the one of canvas
counts="image=0.33,screenshot=0.2,screenshot/highlighted=0.06,screenshot/field=0.03,basics=0.04"
counts="$counts,basics/shape_single=0.02,video=0.18,chat=0.04,video/direction=0.05,image/shape_of=0.04"
counts="$counts,video/first_appear=0.03,image/position=0.06,screenshot/button_colour=0.08,video/at_time=0.04"
counts="$counts,video/colour_order=0.06,image/count_colour=0.08,image/count_all=0.08"
case "$plan" in
    # the CPU plan ends with a second pass over image_first at 3/4 of the peak
    cpu) phases=("basics 1.5 1" "images 6 1" "ground 6 1" "image_first 15 1" "image_first 19 0.75")
         batch=${BATCH:-16} lr=${LR:-4e-4} ;;
    # on one H200, next to two other variants for the first 6.3 min (device_run.sh), then alone; ~3.5x
    # the CPU plan's samples; the last two phases weight video up (the full mix)
    gpu) phases=("basics 0.27 1" "images 0.9 1" "ground 1.08 1" "image_first 1.8 1" "full 2.25 0.6" "full 3 0.5")
         batch=${BATCH:-128} lr=${LR:-8e-4} ;;
    # the max/min aux heads teach the tower titles and shapes (ground), one structural kind at a time
    # teaches the LM where to look (each collapses the model onto its kind), then the wider mixes bring
    # the other kinds back (docs/bench/aux_extension/)
    refine) phases=("ground 25 1 --warmup 30" "screenshot/title 1.2 0.75" "screenshot/field 1.2 0.75"
                    "screenshot/highlighted 1.2 0.75" "basics/shape_single,image/shape_of 1.5 0.75"
                    "video 5 0.75" "full 20 0.75" "image_first 25 0.5")
            batch=${BATCH:-16} lr=${LR:-4e-4} every=(--aux-weight 1 --warmup 20) ;;
    # the kinds still near chance after refine, weighted up with stronger aux heads (the tower learns to
    # carry highlighted buttons and field values), then the whole task set back
    weak) w="screenshot/field=1,screenshot/highlighted=2,basics/shape_single=0.7,image/shape_of=0.7"
          w1="$w,video/direction=1,video/at_time=0.4,image=1,screenshot=0.6,video=1,chat=0.2"
          w2="screenshot/field=1.5,screenshot/highlighted=1.5,basics/shape_single=1,image/shape_of=1.2"
          w2="$w2,video/direction=0.5,image=0.6,screenshot=0.3,video=0.8,chat=0.1"
          # then field values mostly: the tower carries them by now (aux heads 94%); alone the LM learns to
          # read them in 2,400 samples (probe --lm), in this mix it did not (its loss stayed at ln 8 / 2)
          w3="screenshot/field=2,screenshot/highlighted=1,image=0.5,screenshot=0.3,video=0.5,basics=0.1"
          # then everything, the weak kinds still weighted up, in one long phase at half the peak: a
          # restart at the full peak undid the highlighted buttons within 400 steps
          w4="image=0.33,screenshot=0.25,screenshot/highlighted=0.05,screenshot/field=0.04,basics=0.06"
          w4="$w4,basics/shape_single=0.03,video=0.2,chat=0.04"
          phases=("$w1 25 1 --aux-weight 1.5 --warmup 60" "$w2 25 1 --aux-weight 1.5 --warmup 40"
                  "$w3 5 1 --aux-weight 1" "$w4 45 0.5 --aux-weight 1 --warmup 60")
          batch=${BATCH:-16} lr=${LR:-3e-4} ;;
    # one kind alone, then everything back: alone, the LM learns in 100-250 steps kinds it did not learn
    # in thousands of mixed ones (field values, video direction), and the full mix after keeps them
    # (docs/bench/click/); the full mix weights the clicked kinds up
    click) m="image=0.33,screenshot=0.25,screenshot/highlighted=0.05,screenshot/field=0.1,basics=0.06"
           m="$m,basics/shape_single=0.03,video=0.2,chat=0.04"
           d="$m,video/direction=0.08"  # direction took two rounds: its loss 0.70 -> 0.35, then -> 0.14
           phases=("screenshot/field 5 1" "$m 15 0.5 --warmup 60" "video/direction 6 1" "$d 25 0.5 --warmup 60"
                   "video/direction 6 1" "$d 25 0.5 --warmup 60")
           batch=${BATCH:-16} lr=${LR:-3e-4} every=(--aux-weight 1) ;;
    # per-token targets (--object-weight): the shape and colour under each image and video-chunk token,
    # the word under each screenshot token, every token's position. Through the answers alone the tower
    # carried colour per token (a linear probe: 97%) but not a small object's shape (42%) nor where a
    # token is (R^2 0.21), so no question naming one object among several could be answered. Two image
    # phases teach it, then the click recipe: a kind alone, the full mix back (docs/bench/objects/;
    # three more phases, the X button's colour and left/right alone then the mix, gained nothing)
    objects) i="image/shape_of=1,image/colour_of=0.5,basics/shape_single=0.3,image=0.5"
             i2="image/shape_of=1,image/colour_of=0.5,image/position=1,basics/shape_single=0.2,image=0.5"
             m="image=0.33,screenshot=0.25,screenshot/highlighted=0.05,screenshot/field=0.1,basics=0.06"
             m="$m,basics/shape_single=0.03,video=0.2,chat=0.04,video/direction=0.08,image/shape_of=0.06"
             m2="image=0.33,screenshot=0.25,screenshot/highlighted=0.08,screenshot/field=0.05,basics=0.06"
             m2="$m2,basics/shape_single=0.03,video=0.2,chat=0.04,video/direction=0.08,image/shape_of=0.06"
             m2="$m2,video/first_appear=0.05"
             phases=("$i 10 1" "$i2 10 1" "image/position 5 1" "$m 30 0.5 --warmup 60"
                     "screenshot/highlighted 4 1" "video/first_appear,video/at_time 5 1" "$m2 25 0.5 --warmup 60")
             batch=${BATCH:-16} lr=${LR:-3e-4} every=(--aux-weight 1 --object-weight 1) ;;
    # attention targets (--attend-weight): head j of LM layer 2 attends, from where the answer starts,
    # to the question's j-th named object and carries where it is. With per-token positions (R^2 0.91)
    # left/right stayed at chance: no head looked at the two objects, and once one did (attention
    # targets alone) its values carried their colour, never their place (docs/bench/attend/)
    attend) m="image=0.33,screenshot=0.25,screenshot/highlighted=0.08,screenshot/field=0.05,basics=0.06"
            m="$m,basics/shape_single=0.03,video=0.2,chat=0.04,video/direction=0.08,image/shape_of=0.06"
            m="$m,video/first_appear=0.05,image/position=0.08,screenshot/button_colour=0.06,video/at_time=0.04"
            # the last mix adds the kinds still behind stage 5 after phase 4 (colour order, count one colour)
            phases=("image/position 8 1" "$m 30 0.5 --warmup 60" "screenshot/button_colour 4 1"
                    "$m 30 0.5 --warmup 60" "$m,video/colour_order=0.05,image/count_colour=0.03 18 0.5 --warmup 60")
            batch=${BATCH:-16} lr=${LR:-3e-4} every=(--aux-weight 1 --object-weight 1 --attend-weight 1) ;;
    # the X button's colour: the tokens did not carry a coloured button's white label (a probe: 13%) and
    # the supervised heads spread over all buttons; alone with the per-token targets at weight 4 the
    # label probe rose to 34% and the kind to 87%, then the full mix back, then a long mix at a third of
    # the peak with both counting kinds weighted up (docs/bench/buttons/; the counting targets tried
    # after it, --count-weight and --swap-weight, did not make larger images count right: not in the plan)
    buttons) m="image=0.33,screenshot=0.25,screenshot/highlighted=0.08,screenshot/field=0.05,basics=0.06"
             m="$m,basics/shape_single=0.03,video=0.2,chat=0.04,video/direction=0.08,image/shape_of=0.06"
             m="$m,video/first_appear=0.05,image/position=0.08,screenshot/button_colour=0.08,video/at_time=0.04"
             m="$m,video/colour_order=0.05,image/count_colour=0.03"
             phases=("screenshot/button_colour 5 1 --object-weight 4" "$m 18 0.5 --warmup 60"
                     "$counts 24 0.3334 --warmup 60")
             batch=${BATCH:-16} lr=${LR:-3e-4} every=(--aux-weight 1 --object-weight 1 --attend-weight 1) ;;
    # canvas twins (--canvas-weight): a picture's tokens changed with the canvas around it (padding a
    # scene with its own background halved their cosine and the counts fell: the tower's attention
    # spreads over the background), so each picture is also edge-padded to a larger seen size and its
    # shared cells' tokens asked to match; the buttons plan's last mix at a third of the peak
    # (docs/bench/canvas/: unseen-resolution images 83 -> 87, screenshots 87 -> 91 at n = 60)
    canvas) phases=("$counts 35 0.3334 --warmup 60")
            batch=${BATCH:-16} lr=${LR:-3e-4}
            every=(--aux-weight 1 --object-weight 1 --attend-weight 1 --canvas-weight 2) ;;
    # people's wordings (training questions worded many ways: generators/phrasing.py) and two answer
    # forms a visitor asks for, every shape with its colour (image/describe) and "the ball moves left";
    # first the new forms weighted up at half the peak, then the canvas plan's mix back at a third (the
    # bundled run's second phase ran 5 min on 2 threads, 31 on 1, then 50 on 2 again, each resumed from
    # the last checkpoint with a longer --phase-minutes: two threads beside another job on a 2-core
    # machine took 25 s a step instead of 1.4, and held-out wordings were still at 45-72% after 36 min)
    phrasing) p1="$counts,image/describe=0.12,video/direction=0.1"
              phases=("$p1 25 0.5 --warmup 60" "$counts,image/describe=0.05 86 0.3334 --warmup 60")
              batch=${BATCH:-16} lr=${LR:-3e-4}
              every=(--aux-weight 1 --object-weight 1 --attend-weight 1 --canvas-weight 2) ;;
    # the phrasing plan's mix again, longer, with two additions: made-up words in the synonym slots of
    # trained wordings (phrasing.P_NOVEL: held-out synonyms are words the model never met) and training
    # screenshots shown smaller (screenshots.P_SHRINK: a window over the image budget is shrunk into it)
    people) phases=("$counts,image/describe=0.05 ${MINUTES:-75} 0.4 --warmup 60")
            batch=${BATCH:-16} lr=${LR:-3e-4}
            every=(--aux-weight 1 --object-weight 1 --attend-weight 1 --canvas-weight 2) ;;
    # thinking that helps (issue: Toggle): enumeration traces (numbered objects, boxes and flashes; each
    # chunk's colour at its time) on every traced kind, half of them checked again (generators.RECHECK,
    # the redundancy the Toggle stage, training/toggle.py, then trims), asked in thinking mode at 0.7 and
    # weighted up to ~35% of the mix (the first run, 25 min with them at ~25% and thinking at 0.6, had
    # not learned to write them: docs/bench/toggle_stage/)
    thinking) t="video/colour_order=0.15,video/at_time=0.15,image/count_all=0.12,image/count_colour=0.12"
              t="$t,screenshot/checked=0.05,video/flashes=0.05"
              phases=("$counts,image/describe=0.05,$t ${MINUTES:-72} 0.5 --warmup 60 --thinking 0.7")
              batch=${BATCH:-16} lr=${LR:-3e-4}
              every=(--aux-weight 1 --object-weight 1 --attend-weight 1 --canvas-weight 2) ;;
    *) echo "unknown PLAN=$plan (cpu, gpu, refine, weak, click, objects, attend, buttons, canvas, phrasing, people or thinking)" >&2; exit 2 ;;
esac
common=(--out "$out" --batch "$batch" --warmup 30 --device "${DEVICE:-cpu}" --threads "${THREADS:-2}"
        --workers "${WORKERS:-1}" --ckpt-minutes 5 --steps 1000000)  # phases end on time, not steps
case "$plan" in refine|weak|click|objects|attend|buttons|canvas|phrasing|people|thinking) [ -n "${INIT:-}" ] || { echo "PLAN=$plan needs INIT: exported weights or a training run" >&2; exit 2; } ;; esac
init=()
if [ -f "${INIT:-}/ckpt.safetensors" ] && [ ! -f "$out/ckpt.safetensors" ]; then
    mkdir -p "$out" && cp "$INIT"/ckpt.json "$INIT"/ckpt.safetensors "$INIT"/tokenizer.json "$out"/
elif [ -n "${INIT:-}" ]; then
    init=(--init "$INIT")  # used by the first phase of a fresh run only (train.py)
fi
prev=""
for phase in "${phases[@]}"; do
    read -r mix minutes factor flags <<<"$phase"
    read -r peak minutes < <("$py" -c "print(f'{$lr * $factor:.3g}', $minutes * ${SCALE:-1})")
    new=()
    # a refinement's every phase is new (the first one too: the start is another run's weights)
    if [ "$mix" = "$prev" ] || [ -n "${INIT:-}" ]; then new=(--new-phase); fi
    # shellcheck disable=SC2086  # the phase's own flags split on spaces
    "$py" -m training.train "${common[@]}" "${init[@]}" "${every[@]}" ${FLAGS:-} --mix "$mix" \
        --phase-minutes "$minutes" --lr "$peak" "${new[@]}" ${flags:-}
    prev=$mix
    # a hook between phases (the device script exports after each, so a cut-off run still returns weights)
    if [ -n "${AFTER_PHASE:-}" ]; then $AFTER_PHASE "$out"; fi
done
