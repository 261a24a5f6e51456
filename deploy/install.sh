#!/usr/bin/env bash
# Install segrefine-edge as a service on a Jetson, a Raspberry Pi, a Coral host or any Linux box:
# a system user, a venv under /opt/segrefine-edge, the udev rules a board needs, the systemd unit and
# its environment file, then `systemctl enable --now`. Idempotent: run it again to upgrade or repair.
#
#   deploy/install.sh [--board auto|jetson|pi|coral|generic] [--root DIR] [--dry-run] [--no-start]
#                     [--pip-args "ARGS"] [--uninstall [--purge]]
#
# --root DIR installs into DIR instead of / and runs nothing outside it (no useradd, udevadm or
# systemctl): what CI checks. --dry-run prints every command. --uninstall stops and removes the
# service, the venv and the rules; the environment file and the recordings stay unless --purge.
set -euo pipefail

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }

board=auto root="" dry_run=0 start=1 uninstall=0 purge=0 pip_args=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --board) board="${2:?--board needs a value}"; shift ;;
        --root) root="${2:?--root needs a folder}"; shift ;;
        --dry-run) dry_run=1 ;;
        --no-start) start=0 ;;
        --pip-args) pip_args="${2?--pip-args needs a value}"; shift ;;
        --uninstall) uninstall=1 ;;
        --purge) purge=1 ;;
        *) echo "error: unknown option $1; see --help" >&2; exit 2 ;;
    esac
    shift
done

here="$(cd "$(dirname "$0")" && pwd)"
source_dir="$(cd "$here/.." && pwd)"
prefix="$root/opt/segrefine-edge"
unit="$root/etc/systemd/system/segrefine-edge.service"
env_file="$root/etc/segrefine-edge/stream.env"
rules="$root/etc/udev/rules.d/99-edgetpu-accelerator.rules"
user=segrefine-edge

run() {
    echo "+ $*"
    if [[ $dry_run -eq 0 ]]; then
        "$@"
    fi
}

# Outside --root only: the system's users, udev and systemd
system() {
    if [[ -n "$root" ]]; then
        echo "skipped (--root): $*"
    else
        run "$@"
    fi
}

case "$(uname -m)" in
    x86_64|aarch64) ;;
    *) echo "error: no LiteRT wheel for $(uname -m); use a 64-bit OS (x86-64 or arm64)" >&2; exit 2 ;;
esac
if [[ -z "$root" && $dry_run -eq 0 && $(id -u) -ne 0 ]]; then
    echo "error: run as root (sudo deploy/install.sh), or try --dry-run or --root DIR first" >&2
    exit 2
fi

detect_board() {
    if [[ -f /etc/nv_tegra_release ]]; then
        echo jetson
    elif grep -qs "Raspberry Pi" /proc/device-tree/model; then
        echo pi
    elif [[ -e /dev/apex_0 ]] || { command -v lsusb >/dev/null 2>&1 && lsusb | grep -qE "1a6e:089a|18d1:9302"; }; then
        echo coral
    else
        echo generic
    fi
}
if [[ $board == auto ]]; then
    board="$(detect_board)"
fi
case "$board" in
    jetson|pi|coral|generic) ;;
    *) echo "error: unknown board '$board'; use auto, jetson, pi, coral or generic" >&2; exit 2 ;;
esac
echo "board: $board ($(uname -m)); installing into ${root:-/}"

if [[ $uninstall -eq 1 ]]; then
    system systemctl disable --now segrefine-edge
    run rm -f "$unit" "$rules"
    system systemctl daemon-reload
    run rm -rf "$prefix"
    if [[ $purge -eq 1 ]]; then
        run rm -rf "$root/etc/segrefine-edge" "$root/var/lib/segrefine-edge" "$root/var/cache/segrefine-edge"
        system userdel "$user"
    fi
    echo "removed segrefine-edge; $([[ $purge -eq 1 ]] && echo "its settings and recordings too" || echo "kept $env_file and /var/lib/segrefine-edge (--purge removes them)")"
    exit 0
fi

# 1. the service user: cameras are group video, the Coral USB accelerator group plugdev
if [[ -n "$root" ]] || ! id "$user" >/dev/null 2>&1; then
    system useradd --system --no-create-home --shell /usr/sbin/nologin --user-group --groups video,plugdev "$user"
fi

# 2. the venv; on a Jetson it sees JetPack's TensorRT bindings (system site packages)
venv_flags=()
extras=""
if [[ $board == jetson ]]; then
    venv_flags=(--system-site-packages)
    extras="[onnx]"
fi
if [[ ! -x "$prefix/venv/bin/python" ]]; then
    run mkdir -p "$prefix"
    run python3 -m venv "${venv_flags[@]}" "$prefix/venv"
fi
# shellcheck disable=SC2086  # --pip-args is a list of words on purpose
run "$prefix/venv/bin/pip" install --quiet --upgrade $pip_args "$source_dir$extras"
if [[ $board == jetson ]]; then
    # device memory for the TensorRT backend; the wheel must match JetPack's CUDA
    # shellcheck disable=SC2086
    run "$prefix/venv/bin/pip" install --quiet $pip_args "cuda-python>=12,<13"
fi

# 3. udev rules for the Coral USB accelerator (both IDs: before and after its firmware loads)
if [[ $board == coral ]]; then
    run install -D -m 644 "$here/coral/99-edgetpu-accelerator.rules" "$rules"
    system udevadm control --reload-rules
    system udevadm trigger
    echo "libedgetpu comes from Coral's apt repository: deploy/coral/install.sh installs it"
fi

# 4. the unit, and the environment file unless one is there (it holds the user's settings)
run install -D -m 644 "$here/systemd/segrefine-edge.service" "$unit"
if [[ ! -f "$env_file" ]]; then
    run install -D -m 600 "$here/systemd/segrefine-edge.env" "$env_file"
    echo "edit $env_file (the camera, the model), then: systemctl restart segrefine-edge"
fi

# 5. start it, now and at every boot
system systemctl daemon-reload
if [[ $start -eq 1 ]]; then
    system systemctl enable --now segrefine-edge
fi
echo "installed: $prefix/venv/bin/segrefine-edge; logs: journalctl -u segrefine-edge -f"
