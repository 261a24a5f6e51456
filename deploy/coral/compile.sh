#!/usr/bin/env bash
# Compile an EdgeTPU-ready model (from `segrefine-edge convert RUN --to edgetpu`) for the Coral TPU.
#
#   deploy/coral/compile.sh MODEL_edgetpu-ready.tflite [OUT_DIR]
#
# Writes OUT_DIR/MODEL_edgetpu.tflite (edgetpu_compiler's naming), which `segrefine-edge stream
# --model` loads with the EdgeTPU delegate (libedgetpu), falling back to the CPU twin without a TPU.
# edgetpu_compiler runs on x86-64 Debian/Ubuntu only: https://coral.ai/docs/edgetpu/compiler/
# (apt package edgetpu-compiler from packages.cloud.google.com). It could not be installed on the
# machines this project is built on, so this script has not been run against a real compiler.
set -euo pipefail

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }

if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
    usage
    exit 0
fi
model="$1"
out_dir="${2:-$(dirname "$model")}"
if [[ ! -f "$model" ]]; then
    echo "error: $model does not exist; convert one first: segrefine-edge convert RUN --to edgetpu" >&2
    exit 2
fi
if ! command -v edgetpu_compiler >/dev/null 2>&1; then
    echo "error: edgetpu_compiler is not installed; on x86-64 Debian/Ubuntu: sudo apt-get install edgetpu-compiler" \
         "(see https://coral.ai/docs/edgetpu/compiler/), then run this script again" >&2
    exit 2
fi
segrefine-edge convert check-edgetpu "$model" || echo "note: some ops will stay on the CPU (listed above)" >&2
edgetpu_compiler --show_operations --out_dir "$out_dir" "$model"
compiled="$out_dir/$(basename "${model%.tflite}")_edgetpu.tflite"
# Keep the project's naming: MODEL_edgetpu-ready_edgetpu.tflite -> MODEL_edgetpu.tflite, whose CPU twin
# (MODEL.tflite) the runtime falls back to on a machine without a TPU.
final="$out_dir/$(basename "${model%_edgetpu-ready.tflite}")_edgetpu.tflite"
if [[ "$compiled" != "$final" ]]; then
    mv "$compiled" "$final"
fi
# edgetpu_compiler drops what convert appended: the model contract (classes, palette, input range)
segrefine-edge convert attach-contract "$model" "$final"
echo "compiled: $final"
