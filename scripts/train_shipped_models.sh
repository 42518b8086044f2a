#!/usr/bin/env bash
# Retrain the shipped feed-forward models (nst_engine/data/models/*.onnx) on a CPU, as they were made.
#
#   scripts/train_shipped_models.sh [WORK_DIR] [STYLE ...]
#
# The paintings and photos come from ../shared (never copied into the project); checkpoints and
# previews go to WORK_DIR (default /tmp/nst-train), only the .onnx files into the package.
# starry-night is trained from scratch with `nst train`'s defaults (the CPU recipe, ~40 min on 2
# cores); the others start from its checkpoint (--init) and need fewer steps.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-/tmp/nst-train}"
shift || true
SHARED=../shared
NST=".venv/bin/nst"
mkdir -p "$WORK"
styles=("$@")
[ ${#styles[@]} -eq 0 ] && styles=(starry_night great_wave composition_vii klimt_the_kiss)

train() {  # STYLE_FILE_STEM [nst train options...]
    local stem="$1"; shift
    local name="${stem//_/-}"
    nice -n 5 "$NST" train "$SHARED/images/styles/$stem.jpg" --content-dir "$SHARED/datasets/train_photos" \
        --name "$name" --checkpoint "$WORK/$name.ckpt.pt" --checkpoint-every 250 \
        --preview-every 500 --preview "$SHARED/images/content/kodak_23.png" --preview-size 384 -q \
        -o "nst_engine/data/models/$name.onnx" "$@"
}

for stem in "${styles[@]}"; do
    if [ "$stem" = starry_night ]; then
        train "$stem"
        # The shipped starry-night then trained 4000 steps more (800 on 2x256 crops), started from
        # the first one (session 5: median equivalent steps 8.5 -> 9, model loss ~10 % lower).
        # The other styles were fine-tuned from the first checkpoint, before this second run.
        cp "$WORK/starry-night.ckpt.pt" "$WORK/starry-night.first.ckpt.pt"
        nice -n 5 "$NST" train "$SHARED/images/styles/$stem.jpg" --content-dir "$SHARED/datasets/train_photos" \
            --name starry-night --init "$WORK/starry-night.first.ckpt.pt" --steps 4000 --fine-steps 800 \
            --checkpoint "$WORK/starry-night.long.ckpt.pt" --checkpoint-every 250 -q \
            -o nst_engine/data/models/starry-night.onnx
    else
        [ -f "$WORK/starry-night.ckpt.pt" ] || { echo "train starry_night first (its checkpoint starts the others)" >&2; exit 2; }
        first="$WORK/starry-night.first.ckpt.pt"
        [ -f "$first" ] || first="$WORK/starry-night.ckpt.pt"
        train "$stem" --init "$first" --steps 500 --fine-steps 50
    fi
done
