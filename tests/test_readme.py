"""The README's two commands say what they install: every Debian package `scripts/dev.sh` installs is named."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_package_dev_sh_installs_is_named_in_the_readme():
    script = (REPO / "scripts" / "dev.sh").read_text()
    listed = re.search(r"^APT_PACKAGES=\(([^)]*)\)", script, re.M)
    assert listed, "scripts/dev.sh names its Debian packages in APT_PACKAGES=(...)"
    packages = set(listed.group(1).split()) | set(re.findall(r"pkgs\+=\(([^)]*)\)", script)[0].split())
    assert {"mosquitto", "postgresql", "chromium", "python3-venv"} <= packages
    section = (REPO / "README.md").read_text().split("## Two commands", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`([a-z0-9.+-]+)`", section))
    assert packages <= named, f"README's 'Two commands' does not name {sorted(packages - named)}"
