"""README.md's commands: the first shell block is install-and-demo then exactly the CI command;
every ``tvfast …`` command of every shell block parses with the real parser, and every
repository path the README names (commands, inline code, links) exists."""

import importlib
import re
import shlex
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from tvfast.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CI_SCRIPT = ROOT / ".ci" / "run"

SHELL_LANGUAGES = {"bash", "sh", "shell", "console", "zsh"}


def shell_blocks(text: str) -> list[list[str]]:
    """The lines of every fenced code block tagged as a shell language, in order."""
    fence = re.compile(r"^(```+|~~~+)\s*([\w-]*)")
    lines, blocks, i = text.splitlines(), [], 0
    while i < len(lines):
        m = fence.match(lines[i].strip())
        if m:
            marker, language = m.group(1), m.group(2).lower()
            body, i = [], i + 1
            while i < len(lines) and not lines[i].strip().startswith(marker[:3]):
                body.append(lines[i])
                i += 1
            if language in SHELL_LANGUAGES:
                blocks.append(body)
        i += 1
    return blocks


def commands(block: list[str]) -> list[str]:
    """Command lines of a shell block: comment and blank lines dropped, ``\\`` continuations joined,
    a leading ``$ `` prompt removed (trailing ``# …`` comments stay; :func:`simple_commands` drops them)."""
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


def simple_commands(line: str) -> list[list[str]]:
    """The words of each command of a shell line split at ``&&``, ``||``, ``;`` and ``|``,
    comments dropped and leading ``VAR=value`` assignments skipped."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    result, words = [], []
    for token in lexer:
        if token in (";", "&&", "||", "|", "&"):
            result.append(words)
            words = []
        else:
            words.append(token)
    result.append(words)
    result = [[w for i, w in enumerate(ws) if not (re.fullmatch(r"\w+=\S*", w) and all("=" in v for v in ws[:i]))]
              for ws in result]
    return [ws for ws in result if ws]


README_TEXT = README.read_text(encoding="utf-8") if README.is_file() else ""
ALL_COMMANDS = [words for block in shell_blocks(README_TEXT) for line in commands(block)
                for words in simple_commands(line)]
TVFAST_COMMANDS = [words[1:] for words in ALL_COMMANDS if words[0] == "tvfast"]


@pytest.fixture(scope="module")
def first_block_commands():
    assert README.is_file(), f"README.md is missing: {README}"
    blocks = shell_blocks(README_TEXT)
    assert blocks, "README.md has no fenced shell code block (```bash … ```)"
    return commands(blocks[0])


def test_first_shell_block_has_exactly_two_commands(first_block_commands):
    assert len(first_block_commands) == 2, first_block_commands


def test_second_command_is_the_ci_command(first_block_commands):
    ci_lines = [line for line in CI_SCRIPT.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert first_block_commands[1] == ci_lines[-1].strip(), (
        f"README's second command\n  {first_block_commands[1]}\nis not the last line of .ci/run\n  {ci_lines[-1]}"
    )


def test_first_command_ends_with_the_demo(first_block_commands):
    assert first_block_commands[0].rstrip().endswith("tvfast demo"), first_block_commands[0]


def test_readme_shows_every_tvfast_command():
    shown = {argv[0] for argv in TVFAST_COMMANDS if argv}
    assert {"demo", "denoise", "train", "evaluate", "bench"} <= shown, shown


def _parser_of(command: str):
    """The parser of ``tvfast COMMAND``: the core's, or the training package's for its entry-point commands."""
    found = [ep for ep in entry_points(group="tvfast.commands") if ep.name == command]
    if not found:
        return build_parser(), [command]
    return importlib.import_module(found[0].module).build_parser(), []


@pytest.mark.parametrize("argv", TVFAST_COMMANDS, ids=[" ".join(a)[:60] for a in TVFAST_COMMANDS])
def test_tvfast_command_parses(argv):
    parser, prefix = _parser_of(argv[0])
    try:
        parser.parse_args(prefix + argv[1:])
    except SystemExit as exc:  # argparse's way of refusing a command line
        pytest.fail(f"`tvfast {' '.join(argv)}` does not parse (exit {exc.code})")


def _repository_paths(words: list[str]) -> list[str]:
    """Words that name a file or folder of this repository: their first component is a top-level entry."""
    import subprocess

    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    # tracked entries only: a user's own folders (runs/, checkpoints) are not the repository's
    top = {path.split("/")[0] for path in tracked} or {p.name for p in ROOT.iterdir() if p.name != ".git"}
    found = []
    for word in words:
        if word.startswith("-") or "$" in word or "://" in word:
            continue
        value = word.split("=", 1)[1] if word.startswith("-") and "=" in word else word
        parts = Path(value).parts
        if parts and parts[0] in top and ("/" in value or value.endswith((".py", ".sh", ".md"))):
            found.append(value)
    return found


def named_paths(text: str) -> list[str]:
    """Repository paths the README names: in its shell commands, its inline code and its links."""
    without_blocks = re.sub(r"^(```|~~~).*?^\1", "", text, flags=re.MULTILINE | re.DOTALL)
    words = [w for ws in ALL_COMMANDS for w in ws]
    for span in re.findall(r"`([^`\n]+)`", without_blocks):
        try:
            words += shlex.split(span, comments=True)
        except ValueError:  # an unbalanced quote in prose code: take it word by word
            words += span.split()
    links = [t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", without_blocks)]
    words += [t for t in links if t and "://" not in t and not t.startswith("mailto:")]
    return _repository_paths(words)


def test_named_repository_paths_exist():
    paths = named_paths(README_TEXT)
    assert len(paths) >= 3, f"the README names only {paths}; the scan is broken"
    missing = sorted({p for p in paths if not (ROOT / p).exists()})
    assert missing == [], missing


def test_scripts_run_by_the_readme_exist():
    """``bash X`` and ``python X.py`` in the README run files that exist."""
    scripts = [words[1] for words in ALL_COMMANDS
               if len(words) > 1 and words[0] in ("bash", "sh", "python", "python3") and not words[1].startswith("-")]
    missing = [s for s in scripts if "$" not in s and not (ROOT / s).is_file()]
    assert missing == [], missing


def _doc_files() -> list[Path]:
    return sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "benchmarks" / "RESULTS.md", ROOT / "experiments" / "README.md"]


@pytest.mark.parametrize("doc", _doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_paths_named_in_the_docs_exist(doc):
    """Repository paths in a document's inline code exist (from the root), and so do its relative links (from its folder)."""
    text = doc.read_text(encoding="utf-8")
    words = []
    for span in re.findall(r"`([^`\n]+)`", text):
        try:
            words += shlex.split(span, comments=True)
        except ValueError:
            words += span.split()
    paths = [p.split("::")[0] for p in _repository_paths(words)]  # a pytest node id names its file
    missing = [p for p in paths if not (any(ROOT.glob(p)) if "*" in p else (ROOT / p).exists())]
    links = [t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", text)]
    missing += [t for t in links if t and "://" not in t and not (doc.parent / t).exists()]
    assert sorted(set(missing)) == [], missing
