#!/usr/bin/env bash
# Rebuild the committed checkpoints in src/diffusion_internals/course/checkpoints/ (what `make models` runs).
#
#   scripts/train_models.sh                 all of them, classifiers first (they score the others)
#   scripts/train_models.sh NAME [NAME...]  only these (names below)
#   OUT=/tmp/ckpt scripts/train_models.sh   somewhere else
#
# CPU only, one torch thread per run (--threads 1, the CLI default): a rerun on the same machine and
# torch version gives the same weights bit for bit; elsewhere they differ in the last bits and the
# metrics in training.json agree only roughly. Runs at nice 10 (NICE=0 to change). Each checkpoint's
# training.json keeps the command that made it, its wall-clock time and its metrics.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-src/diffusion_internals/course/checkpoints}
NICE=${NICE:-10}

ORDER=(
  digits-classifier
  colour-digits-classifier
  digits-linear-eps
  digits-cosine-eps
  digits-sqrt-eps
  digits-linear-v-zsnr
  digits-cosine-eps-no-dropout
  digits-flow
  digits-edm
  colour-digits-cosine-eps
  colour-digits-client
)
declare -A ARGS=(
  # Feature classifiers for class accuracy and digits-FID (test accuracy in training.json).
  [digits-classifier]="--dataset digits --classifier --steps 3000"
  [colour-digits-classifier]="--dataset colour_digits --classifier --steps 3000"
  # Chapter 2 and Project A: one recipe, three schedules.
  [digits-linear-eps]="--dataset digits --schedule linear --prediction eps --steps 3000"
  [digits-cosine-eps]="--dataset digits --schedule cosine --prediction eps --steps 3000"
  [digits-sqrt-eps]="--dataset digits --schedule sqrt --prediction eps --steps 3000"
  # Chapters 6-7: v-prediction on the linear schedule rescaled to zero terminal SNR (Lin et al. 2023).
  [digits-linear-v-zsnr]="--dataset digits --schedule linear --zero-snr --prediction v --steps 3000"
  # Flawed: never saw the null label, so classifier-free guidance has no unconditional model.
  [digits-cosine-eps-no-dropout]="--dataset digits --schedule cosine --prediction eps --steps 3000 --label-dropout 0 --flaw no-label-dropout"
  # Rectified flow (Esser et al. 2024): t ~ logit-normal(0, 1), velocity target, the same U-Net and recipe.
  [digits-flow]="--dataset digits --objective flow --steps 3000"
  # EDM (Karras et al. 2022): ln(sigma) ~ N(-1.2, 1.2^2), preconditioned F, sigma_data 0.5, the same U-Net and recipe.
  [digits-edm]="--dataset digits --objective edm --steps 3000"
  # Chapter 5: colour shifts and over-saturation under strong guidance.
  [colour-digits-cosine-eps]="--dataset colour_digits --schedule cosine --prediction eps --steps 5000 --channels 32,64,64"
  # Project C, the "client" model: trained on the linear schedule, shipped with a config claiming cosine.
  [colour-digits-client]="--dataset colour_digits --schedule linear --prediction eps --steps 5000 --channels 32,64,64 --flaw claims-cosine"
)

names=("$@")
if [ ${#names[@]} -eq 0 ]; then names=("${ORDER[@]}"); fi
for name in "${names[@]}"; do
  if [ -z "${ARGS[$name]+set}" ]; then
    echo "unknown checkpoint '$name'; known: ${ORDER[*]}" >&2
    exit 2
  fi
done
for name in "${names[@]}"; do
  echo "== $name"
  rm -rf "${OUT:?}/$name"
  # shellcheck disable=SC2086  # ARGS entries are word lists
  nice -n "$NICE" "$PYTHON" -m diffusion_internals.course ${ARGS[$name]} --out "$OUT/$name"
done
