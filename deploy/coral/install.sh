#!/usr/bin/env bash
# Set up a Coral board or a host with a Coral USB/M.2/PCIe accelerator for segrefine-edge:
# Google's apt repository, libedgetpu, the udev rules for the USB accelerator, the package, and a
# smoke test on the TPU. Idempotent: run it again to repair.
#
#   deploy/coral/install.sh [--dry-run] [--max-frequency] [MODEL_edgetpu.tflite]
#
# --dry-run prints the commands without running them. --max-frequency installs libedgetpu1-max
# (faster, hotter) instead of libedgetpu1-std. Debian/Ubuntu and Mendel on x86-64, arm64 or armhf.
# Never `pip install pycoral`: the package of that name on PyPI is an unrelated project.
set -euo pipefail

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }

dry_run=0
runtime=libedgetpu1-std
model=""
for arg in "$@"; do
    case "$arg" in
        -h|--help) usage; exit 0 ;;
        --dry-run) dry_run=1 ;;
        --max-frequency) runtime=libedgetpu1-max ;;
        -*) echo "error: unknown option $arg; see --help" >&2; exit 2 ;;
        *) model="$arg" ;;
    esac
done

here="$(cd "$(dirname "$0")" && pwd)"
run() {
    echo "+ $*"
    if [[ $dry_run -eq 0 ]]; then
        "$@"
    fi
}

case "$(uname -m)" in
    x86_64|aarch64|armv7l) ;;
    *) echo "error: libedgetpu has no build for $(uname -m); use x86-64, arm64 or armhf" >&2; exit 2 ;;
esac
if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: this script needs apt (Debian, Ubuntu, Raspberry Pi OS, Mendel); see deploy/coral/README.md" >&2
    exit 2
fi
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then
    sudo_cmd=(sudo)
fi

list=/etc/apt/sources.list.d/coral-edgetpu.list
key=/usr/share/keyrings/coral-edgetpu.gpg
if [[ ! -f "$list" ]]; then
    run "${sudo_cmd[@]}" sh -c "curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | gpg --dearmor -o $key"
    run "${sudo_cmd[@]}" sh -c "echo 'deb [signed-by=$key] https://packages.cloud.google.com/apt coral-edgetpu-stable main' > $list"
fi
run "${sudo_cmd[@]}" apt-get update
run "${sudo_cmd[@]}" apt-get install -y "$runtime"
run "${sudo_cmd[@]}" install -m 644 "$here/99-edgetpu-accelerator.rules" /etc/udev/rules.d/99-edgetpu-accelerator.rules
run "${sudo_cmd[@]}" udevadm control --reload-rules
run "${sudo_cmd[@]}" udevadm trigger
run python3 -m pip install --upgrade "$here/../.."
if [[ -n "$model" ]]; then
    run segrefine-edge bench "$model" --delegate edgetpu --runs 20
else
    echo "done; smoke test with: segrefine-edge bench MODEL_edgetpu.tflite --delegate edgetpu"
fi
