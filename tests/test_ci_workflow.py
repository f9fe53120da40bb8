"""The firmware workflow is valid YAML a GitHub runner can execute, and commits no secret."""

import re
import subprocess

import pytest
import yaml

from conftest import PROJECT_ROOT

WORKFLOW = PROJECT_ROOT / ".github" / "workflows" / "firmware.yml"


@pytest.fixture(scope="module")
def workflow():
    return yaml.safe_load(WORKFLOW.read_text())


def steps_of(job):
    return job["steps"]


def uses(job, action):
    return [step for step in steps_of(job) if step.get("uses", "").startswith(action + "@")]


def run_scripts(workflow):
    return [step["run"] for job in workflow["jobs"].values() for step in steps_of(job) if "run" in step]


def test_triggers_and_jobs(workflow):
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "push" in triggers and "workflow_dispatch" in triggers
    assert set(workflow["jobs"]) == {"build", "package-on-arm", "flash-on-pi-runner", "flash-over-ssh"}
    for job in workflow["jobs"].values():
        assert job["runs-on"] and all(("uses" in step) != ("run" in step) for step in steps_of(job))


def test_build_job_makes_the_firmware_on_x86_and_uploads_it(workflow):
    build = workflow["jobs"]["build"]
    assert build["runs-on"].startswith("ubuntu-")
    assert any(step.get("run", "").startswith("make rpk") for step in steps_of(build))
    (upload,) = uses(build, "actions/upload-artifact")
    assert upload["with"]["name"] == "firmware"
    assert set(upload["with"]["path"].split()) == {"build/packerOut.zip", "build/build_report.json"}


@pytest.mark.parametrize("name", ["flash-on-pi-runner", "flash-over-ssh"])
def test_deploy_jobs_download_the_build_and_make_flash(workflow, name):
    job = workflow["jobs"][name]
    assert job["needs"] == "build" and job["if"].startswith("vars.PICOSAM_FLASH ==")
    (download,) = uses(job, "actions/download-artifact")
    assert download["with"] == {"name": "firmware", "path": "build"}
    assert any(step.get("run", "").startswith("make flash PI=") for step in steps_of(job))
    assert job["concurrency"]["group"] == "picosam-flash"  # one deployment to the Pi at a time


def test_pi_runner_is_selected_by_label(workflow):
    assert workflow["jobs"]["flash-on-pi-runner"]["runs-on"] == ["self-hosted", "raspberrypi"]


def test_ssh_job_takes_host_key_and_known_hosts_from_secrets(workflow):
    job = workflow["jobs"]["flash-over-ssh"]
    referenced = set(re.findall(r"secrets\.(\w+)", WORKFLOW.read_text()))
    assert {"PI_HOST", "PI_SSH_KEY", "PI_KNOWN_HOSTS"} <= referenced
    flash = next(step for step in steps_of(job) if step.get("run", "").startswith("make flash"))
    assert "PI_KNOWN_HOSTS=" in flash["run"] and "PI_IDENTITY=" in flash["run"]


def test_no_host_key_or_secret_is_committed(workflow):
    text = WORKFLOW.read_text()
    assert "PRIVATE KEY" not in text and "ssh-ed25519 " not in text and "ssh-rsa " not in text
    assert not re.search(r"\b\d{1,3}(\.\d{1,3}){3}\b", text)  # no IP address
    assert not re.search(r"\w@[\w-]+\.(local|lan|com|net|org)\b", text)  # no USER@HOST
    for script in run_scripts(workflow):
        # Expressions go through env:, never pasted into a script (no injection, no secret in argv).
        assert "${{" not in script


def test_run_scripts_are_valid_bash(workflow):
    for script in run_scripts(workflow):
        subprocess.run(["bash", "-n", "-c", script], check=True)


def step_named(job, start):
    (step,) = [step for step in steps_of(job) if step.get("name", "").startswith(start)]
    return step


def test_arm_job_packages_without_a_pi(workflow):
    job = workflow["jobs"]["package-on-arm"]
    assert job["runs-on"] == "ubuntu-24.04-arm" and job["needs"] == "build"
    assert job["if"] == "vars.PICOSAM_ARM_PACKAGE != 'off'"
    (download,) = uses(job, "actions/download-artifact")
    assert download["with"] == {"name": "firmware", "path": "build"}
    archive = step_named(job, "add the Raspberry Pi apt archive")["run"]
    assert "https://archive.raspberrypi.com/debian/raspberrypi.gpg.key" in archive
    assert re.search(r"deb \[arch=arm64 signed-by=\S+raspberrypi-archive-keyring.gpg\] "
                     r"http://archive.raspberrypi.com/debian/ bookworm main", archive)
    assert "Pin-Priority: 100" in archive and archive.rstrip().endswith("sudo apt-get update")
    assert "apt-get install -y --no-install-recommends imx500-tools" in step_named(job, "install imx500-tools")["run"]
    scripts = [step.get("run", "") for step in steps_of(job)]
    order = [next(i for i, text in enumerate(scripts) if needle in text)
             for needle in ("apt-get update", "imx500-tools", "pip install", "picosam package", "picosam rpk inspect")]
    assert order == sorted(order)
    (upload,) = uses(job, "actions/upload-artifact")
    assert upload["with"] == {"name": "network-rpk", "path": "build/network.rpk", "if-no-files-found": "error"}


def test_arm_job_packaging_steps_make_an_rpk_with_intrinsics(workflow, fake_packager_env, tmp_path, monkeypatch):
    """The job's own scripts, run here with the imx500-package test double on PATH and
    `picosam` running this checkout: they leave build/network.rpk with PicoSAM's intrinsics."""
    import os
    import sys
    import zipfile

    from firmware_packaging.rpk import read_rpk

    job = workflow["jobs"]["package-on-arm"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "picosam"
    shim.write_text(f'#!/bin/sh\nPYTHONPATH="{PROJECT_ROOT}" exec "{sys.executable}" -m imx500_picosam "$@"\n')
    shim.chmod(0o755)
    work = tmp_path / "checkout"
    (work / "build").mkdir(parents=True)
    with zipfile.ZipFile(work / "build" / "packerOut.zip", "w") as archive:
        for name in ("dnnParams.xml", "manifest.json", "l2staticData.bin"):
            archive.writestr(name, "x")
    # The build job's artifact carries the report beside the zip: it says the model's ROI rule.
    assert "build/build_report.json" in workflow["jobs"]["build"]["steps"][-1]["with"]["path"]
    (work / "build" / "build_report.json").write_text('{"model": {"roi_rule": "warp"}}')
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    for start in ("imx500-package, then", "check network.rpk"):
        done = subprocess.run(["bash", "-e", "-c", step_named(job, start)["run"]], cwd=work, env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
    package = read_rpk(work / "build" / "network.rpk")
    assert package.intrinsics["task"] == "segmentation" and package.intrinsics["inference_rate"] == 30.0
    assert "input_aspect_ratio" not in package.intrinsics  # a warp model: the sensor stretches the box's ROI
