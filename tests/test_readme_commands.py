"""README.md's first shell block: install-and-demo, then exactly the CI command."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CI_SCRIPT = ROOT / ".ci" / "run"

SHELL_LANGUAGES = {"bash", "sh", "shell", "console", "zsh"}


def first_shell_block(text: str) -> list[str]:
    """Lines of the first fenced code block tagged as a shell language."""
    fence = re.compile(r"^(```+|~~~+)\s*([\w-]*)")
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = fence.match(lines[i].strip())
        if m:
            marker, language = m.group(1), m.group(2).lower()
            body, i = [], i + 1
            while i < len(lines) and not lines[i].strip().startswith(marker[:3]):
                body.append(lines[i])
                i += 1
            if language in SHELL_LANGUAGES:
                return body
        i += 1
    raise AssertionError("README.md has no fenced shell code block (```bash … ```)")


def commands(block: list[str]) -> list[str]:
    """Commands of a shell block: comments and blank lines dropped, ``\\`` continuations joined,
    a leading ``$ `` prompt removed."""
    result, pending = [], ""
    for raw in block:
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("$ ") and not pending:
            line = line[2:].strip()
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        result.append(pending + line)
        pending = ""
    if pending:
        result.append(pending.strip())
    return result


@pytest.fixture(scope="module")
def readme_commands():
    assert README.is_file(), f"README.md is missing: {README}"
    return commands(first_shell_block(README.read_text(encoding="utf-8")))


def test_first_shell_block_has_exactly_two_commands(readme_commands):
    assert len(readme_commands) == 2, readme_commands


def test_second_command_is_the_ci_command(readme_commands):
    ci_lines = [line for line in CI_SCRIPT.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert readme_commands[1] == ci_lines[-1].strip(), (
        f"README's second command\n  {readme_commands[1]}\nis not the last line of .ci/run\n  {ci_lines[-1]}"
    )


def test_first_command_ends_with_the_demo(readme_commands):
    assert readme_commands[0].rstrip().endswith("tvfast demo"), readme_commands[0]


def test_parser_helpers():
    block = ["# install", "$ pip install -e . \\", "    && tvfast demo", "", "python -m pytest -q"]
    assert commands(block) == ["pip install -e . && tvfast demo", "python -m pytest -q"]
    text = "intro\n```python\nx = 1\n```\n```bash\na\nb\n```\n"
    assert first_shell_block(text) == ["a", "b"]
