"""The README's runnable shell blocks work as written on a fresh copy of the checkout.

A block is runnable when the line right above its opening ```bash fence is `<!-- runnable -->`.
They run in order, in one `bash -euo pipefail` session (as in one terminal), in a copy of the
files a clone would have, reusing this checkout's `.venv`, with DATABASE_URL pointing at a fresh
test database (so no embedded server starts per command)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

MARKER = "<!-- runnable -->"


def runnable_blocks(text: str) -> list[str]:
    lines = text.splitlines()
    blocks = []
    for index, line in enumerate(lines):
        if line.strip() != MARKER:
            continue
        fence = lines[index + 1].strip() if index + 1 < len(lines) else ""
        assert fence in ("```bash", "```sh"), f"README line {index + 1}: {MARKER} must be right above a ```bash fence"
        end = next(i for i in range(index + 2, len(lines)) if lines[i].strip() == "```")
        blocks.append("\n".join(lines[index + 2 : end]))
    return blocks


def test_the_readme_has_runnable_blocks() -> None:
    blocks = runnable_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(blocks) >= 2 and all(block.strip() for block in blocks)
    assert runnable_blocks(f"text\n{MARKER}\n```bash\necho one\n```\n```bash\necho two\n```") == ["echo one"]


def unclosed_fences(text: str) -> list[str]:
    """Headings that a fence left open swallows (rendered as code), and an unclosed last fence."""
    inside, swallowed = False, []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("```") and not inside:
            inside = True
        elif stripped == "```":
            inside = False
        elif inside and line.startswith("## "):
            swallowed.append(line)
    return swallowed + (["(a fence is never closed)"] if inside else [])


def test_every_code_block_of_the_readme_is_closed() -> None:
    """(An outside review.) An unclosed ```bash fence turned "Local development" and what follows
    into one code block."""
    assert unclosed_fences((ROOT / "README.md").read_text(encoding="utf-8")) == []
    assert unclosed_fences("```bash\necho\n## Next\n```\n") == ["## Next"]
    assert unclosed_fences("```bash\necho\n") == ["(a fence is never closed)"]


def fresh_copy(destination: Path) -> Path:
    """The tracked and untracked-but-not-ignored files, with their times (so make sees .venv as up to date)."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    (destination / ".venv").symlink_to(ROOT / ".venv")
    return destination


def test_runnable_blocks_work_as_written(db_url: str, tmp_path: Path) -> None:
    if not (ROOT / ".venv" / "bin" / "flywheel").exists() or shutil.which("git") is None:
        pytest.skip("needs the checkout's .venv (make dev) and git")
    checkout = fresh_copy(tmp_path / "checkout")
    # never let make reinstall the shared venv from the copy
    if subprocess.run(["make", "-q", ".venv/.installed"], cwd=checkout, check=False).returncode != 0:
        pytest.skip(".venv is older than pyproject.toml: run `make dev` first")
    # a user's shell: not inside `make test`, no local settings
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("FLYWHEEL_", "WEBHOOK_", "PROVIDER_ORGS", "TRAINING_", "REPLIES_", "VIRTUAL_ENV", "MAKE", "MFLAGS")
        )
    }
    env["DATABASE_URL"] = db_url
    script = "set -euo pipefail\n" + "\n".join(runnable_blocks((ROOT / "README.md").read_text(encoding="utf-8")))
    done = subprocess.run(
        ["bash", "-c", script], cwd=checkout, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    assert (checkout / ".flywheel" / "secrets.json").exists()  # the local secrets were created on first use
