"""The documentation's commands, run as a reader would run them, so examples cannot go stale.

Which blocks run (docs/contributing.md says the same, for writers):

- ``<!-- runnable -->`` on the line before a fenced ``console`` block: each line starting with
  ``$ `` is a command (a line ending in ``\\`` continues on the next); the lines after it, up
  to the next command, are output that must appear, in order, in what the command printed
  (stdout and stderr). Whitespace is not compared (terminals wrap, even inside a path), and
  ``...`` stands for anything, within a line or as a line of its own. Every command must exit
  with status 0: show an expected failure as ``cmd || echo "exit status $?"``.
- ``<!-- runnable file=NAME -->`` before any fenced block: the block's text is written to
  ``NAME`` before the commands after it run.

A page's blocks run in page order in one bash session (variables and ``cd`` carry over) in a
fresh folder holding a copy of ``tests/data``, with ``OPSGRAPH_HOME`` a fresh temporary
directory whose embedded server the test starts, as the tests' fixtures do, and stops at the
end; ``opsgraph`` and ``python`` are the virtualenv's. A command ending in ``&`` runs in the
background until the page is done. Output is rendered for 120 columns.

The README's model picture is generated from the schema classes; a test keeps it current.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from opsgraph.graph.analyst import diagram_block
from opsgraph.graph.embedded import EmbeddedServer
from opsgraph.graph.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
MARKER = re.compile(r"^<!--\s*runnable(?:\s+file=(?P<file>\S+))?\s*-->\s*$")
FENCE = re.compile(r"^(?P<fence>```+|~~~+)\s*(?P<lang>[\w-]*)")
COMMAND_SECONDS = 300
DONE = "__opsgraph_docs_rc__"


@dataclass
class Command:
    line: int  # where it is on its page
    text: str
    expected: list[str] = field(default_factory=list)


@dataclass
class Block:
    line: int
    file: str | None = None  # a file to write, or else commands to run
    text: str = ""
    commands: list[Command] = field(default_factory=list)


def runnable_blocks(path: Path) -> list[Block]:
    """The page's runnable blocks, in order; a marker not followed by a fence is an error."""
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        marker = MARKER.match(lines[index])
        index += 1
        if not marker:
            continue
        fence = FENCE.match(lines[index]) if index < len(lines) else None
        if not fence:
            raise AssertionError(f"{path.name}:{index}: a runnable marker must precede a fence")
        start, index = index + 1, index + 1
        while index < len(lines) and not lines[index].startswith(fence["fence"]):
            index += 1
        body = lines[start:index]
        index += 1
        block = Block(start, file=marker["file"])
        if block.file:
            block.text = "\n".join(body) + "\n"
        else:
            if fence["lang"] != "console":
                raise AssertionError(
                    f"{path.name}:{start}: runnable commands go in a console block"
                )
            block.commands = _commands(body, start)
            if not block.commands:
                raise AssertionError(f"{path.name}:{start}: a runnable block without commands")
        blocks.append(block)
    return blocks


def _commands(body: list[str], first_line: int) -> list[Command]:
    commands: list[Command] = []
    continued = False
    for number, text in enumerate(body, start=first_line + 1):
        if continued:
            commands[-1].text += "\n" + text
        elif text.startswith("$ "):
            commands.append(Command(number, text[2:]))
        elif commands and text.strip():
            commands[-1].expected.append(text)
        continued = text.endswith("\\") and (continued or text.startswith("$ "))
    return commands


def missing_output(expected: list[str], output: str) -> str | None:
    """The first expected line that does not appear (in order) in the output, if any.
    Whitespace is left out on both sides: a terminal wraps long words (paths) anywhere."""
    flat = "".join(output.split())
    position = 0
    for line in expected:
        pieces = ["".join(piece.split()) for piece in line.split("...")]
        if not any(pieces):
            continue
        pattern = r".*?".join(re.escape(piece) for piece in pieces if piece)
        found = re.compile(pattern).search(flat, position)
        if not found:
            return line
        position = found.end()
    return None


class Session:
    """One bash process for a page: commands go to its stdin, their output to files."""

    def __init__(self, work: Path, home: Path) -> None:
        self.work = work
        bin_dir = str(Path(sys.executable).parent)
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPSGRAPH_")}
        if "OPSGRAPH_STORE_PACKAGE" in os.environ:  # which installed store package to run
            env["OPSGRAPH_STORE_PACKAGE"] = os.environ["OPSGRAPH_STORE_PACKAGE"]
        env.update(
            OPSGRAPH_HOME=str(home),
            HOME=str(work.parent / "user"),  # what a page writes under ~ stays in the test's folder
            PATH=bin_dir + os.pathsep + env.get("PATH", ""),
            VIRTUAL_ENV=str(Path(bin_dir).parent),
            COLUMNS="120",
            LINES="50",
        )
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=work,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its background jobs share its process group
        )
        self.count = 0
        self._send("set -o pipefail")

    def _send(self, script: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(script + "\n")
        self.process.stdin.flush()

    def run(self, command: str) -> tuple[int, str]:
        self.count += 1
        out = self.work / f".command-{self.count}.out"
        self._send(f"{{ {command}\n}} > {out} 2>&1 < /dev/null\necho {DONE} $?")
        deadline = time.monotonic() + COMMAND_SECONDS
        assert self.process.stdout is not None
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.process.stdout], [], [], max(left, 0))
            if not ready:
                output = out.read_text() if out.exists() else ""
                raise AssertionError(
                    f"`{command}` still running after {COMMAND_SECONDS} s:\n{output[-3000:]}"
                )
            line = self.process.stdout.readline()
            if not line:
                raise AssertionError(f"the shell ended during `{command}`")
            if line.startswith(DONE):
                return int(line.split()[1]), out.read_text()

    def close(self) -> None:
        """End the shell and whatever it left running in the background, and the embedded
        server of the data directory the page ended in, if it moved to one of its own."""
        with contextlib.suppress(AssertionError):
            self.run("opsgraph db stop")
        group = self.process.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            self.process.poll()  # a zombie shell would keep its process group alive
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        self.process.wait(timeout=30)


def _ports_in_use(blocks: list[Block]) -> list[int]:
    """Ports a page's commands serve on that something else already listens on."""
    ports = set()
    for block in blocks:
        for command in block.commands:
            named = re.findall(r"--port[ =](\d+)", command.text)
            ports.update(int(port) for port in named)
            if "opsgraph serve" in command.text and not named:
                ports.add(8000)
    busy = []
    for port in sorted(ports):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                busy.append(port)
    return busy


RUNNABLE = [page for page in PAGES if runnable_blocks(page)]


@pytest.mark.parametrize("page", RUNNABLE, ids=[str(p.relative_to(ROOT)) for p in RUNNABLE])
def test_the_page_s_commands_run_as_shown(page: Path, tmp_path: Path) -> None:
    blocks = runnable_blocks(page)
    busy = _ports_in_use(blocks)
    if busy:
        pytest.fail(f"ports {busy} are taken by another process: {page.name}'s server cannot run")
    home, work = tmp_path / "home", tmp_path / "work"
    (tmp_path / "user").mkdir()
    shutil.copytree(ROOT / "tests" / "data", work / "tests" / "data")
    server = EmbeddedServer(Settings(home=home))
    server.start()
    session = Session(work, home)
    try:
        for block in blocks:
            if block.file:
                target = work / block.file
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(block.text)
                continue
            for command in block.commands:
                status, output = session.run(command.text)
                where = f"{page.relative_to(ROOT)}:{command.line}"
                assert status == 0, f"{where}: `{command.text}` exited {status}:\n{output}"
                missing = missing_output(command.expected, output)
                assert missing is None, (
                    f"{where}: `{command.text}` did not print\n  {missing}\nit printed:\n{output}"
                )
    finally:
        session.close()
        server.stop()


def test_the_documented_pages_have_runnable_commands() -> None:
    names = {str(page.relative_to(ROOT)) for page in RUNNABLE}
    for name in (
        "README.md",
        "docs/install-and-configuration.md",
        "docs/sources-and-formats.md",
        "docs/identity-and-dead-letters.md",
        "docs/decision-memory.md",
        "docs/graphql-api.md",
        "docs/live-ingest-and-workflows.md",
        "docs/operations-and-security.md",
        "docs/proactive-risk.md",
        "docs/architecture.md",
        "docs/command-line.md",
    ):
        assert name in names, f"{name} has no runnable block"


def test_expected_output_is_matched_in_order_with_elisions() -> None:
    output = "ingest run run-1\n 3 records in 0.5 s: 6 created,\n   0 rejected\nexit status 3\n"
    expected = ["3 records in ... s: 6 created, 0 rejected", "...", "exit"]
    assert missing_output(expected, output) is None
    assert missing_output(["exit status 3", "3 records"], output) == "3 records"
    assert missing_output(["7 records"], output) == "7 records"


def test_the_readme_model_picture_is_generated_from_the_schema() -> None:
    readme = (ROOT / "README.md").read_text()
    assert diagram_block() in readme, (
        "the model picture in README.md differs from the schema classes: regenerate it with "
        "`.venv/bin/python -m opsgraph.graph.analyst README.md`"
    )


LINK = re.compile(r"\]\((?!https?://|mailto:)([^)\s]+)\)")


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors of a page's headings."""
    found = set()
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


def test_relative_links_point_at_files_and_headings_that_exist() -> None:
    broken = []
    for page in PAGES:
        for target in LINK.findall(page.read_text()):
            name, _, anchor = target.partition("#")
            linked = (page.parent / name).resolve() if name else page
            if not linked.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
