"""Every code example of README.md, docs/getting-started.md and docs/guides/*.md runs.

What counts as an example: every fenced block tagged ``bash``, ``sh``, ``console`` or ``python``.
Each one is a test case, named ``DOC:LINE`` (the line of its opening fence), so one failing
example fails alone, with its text and output. Blocks tagged otherwise (``toml``, ``text``, none)
are not run.

How they run:

- Each document gets one temporary folder; its blocks run there in the order they appear, so a
  later block may use what an earlier one wrote (``neurosim train`` then ``neurosim eval``).
  Selecting one block (``-k 'tracker.md:40'``) first runs the earlier blocks of its document.
  Different documents run side by side (two at a time: ``WORKERS``).
- ``bash``/``sh`` blocks: ``bash -euo pipefail`` with the repository's ``.venv/bin`` first on
  PATH. ``console`` blocks: the lines starting with ``$ `` are the commands (the rest is shown
  output, not compared). ``python`` blocks: the venv's Python, the block written to a file.
- Input files: every document's folder starts with the files ``make_inputs`` writes (small, made
  here in well under a second), so the examples can name them as a user would name theirs:

  ``video.mp4``          24 frames, 96x72, 30 fps: a textured square moving right over noise
  ``frames/``            the same frames as PNG images (``frame_000.png`` ...)
  ``times.txt``          their times, one per line, in µs (integers)
  ``clip.npz``           the same frames: ``frames`` (N, H, W) uint8 and ``frame_ts`` (N,) µs
  ``tracking/``          two sequences in the "video" layout: ``NAME.mp4`` + ``NAME.txt``
                         (one 0-based ``x y w h`` box per frame)
  ``recording.h5``       a recording with APS frames and DVS events (the simulator's output for
                         ``video.mp4`` at seed 1): what ``calibrate``/``compare``/``import`` read
  ``boxes.txt``          boxes for ``recording.h5``: ``t_us x y w h`` per line

- A block that cannot run as a test has ``<!-- skip-test: REASON -->`` on the line before its
  fence (the set-up commands themselves, ``scripts/test.sh``, ``mkdocs serve``); it is reported
  as skipped with that reason.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import pathlib
import re
import subprocess
import sys
import time

import numpy as np
import pytest

PROJECT = pathlib.Path(__file__).resolve().parents[1]
VENV_BIN = PROJECT / ".venv" / "bin"
PYTHON = VENV_BIN / "python" if (VENV_BIN / "python").exists() else pathlib.Path(sys.executable)
DOCS = [PROJECT / "README.md", PROJECT / "docs" / "getting-started.md",
        *sorted((PROJECT / "docs" / "guides").glob("*.md"))]
RUN_LANGS = {"bash": "shell", "sh": "shell", "console": "console", "python": "python"}
TIMEOUT_S = 300

FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^\s`]*)")
SKIP = re.compile(r"<!--\s*skip-test:\s*(?P<reason>.+?)\s*-->")


@dataclasses.dataclass(frozen=True)
class Block:
    doc: pathlib.Path
    line: int          # 1-based line of the opening fence
    lang: str          # "shell", "console" or "python"
    code: str
    skip: str | None   # reason, from <!-- skip-test: ... -->

    @property
    def name(self) -> str:
        doc = self.doc.relative_to(PROJECT) if self.doc.is_relative_to(PROJECT) else self.doc.name
        return f"{doc}:{self.line}"


def extract_blocks(doc: pathlib.Path) -> list[Block]:
    """The runnable fenced blocks of a Markdown file, in order."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, start = m["fence"], i
        body = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][len(m["indent"]):])
            i += 1
        i += 1
        lang = RUN_LANGS.get(m["info"].lower())
        if lang is None:
            continue
        previous = next((ln for ln in reversed(lines[:start]) if ln.strip()), "")
        skip = SKIP.search(previous)
        blocks.append(Block(doc, start + 1, lang, "\n".join(body) + "\n", skip["reason"] if skip else None))
    return blocks


ALL_BLOCKS = [b for doc in DOCS if doc.exists() for b in extract_blocks(doc)]


# ---------------------------------------------------------------------------------- inputs

W, H, N_FRAMES, FPS = 96, 72, 24, 30


def _frames() -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W) uint8 frames of a textured 20x20 square moving 2 px a frame, and its boxes."""
    rng = np.random.default_rng(0)
    background = (60 + 40 * rng.random((H, W))).astype(np.uint8)
    texture = (150 + 100 * rng.random((20, 20))).astype(np.uint8)
    frames, boxes = [], []
    for k in range(N_FRAMES):
        x, y = 10 + 2 * k, 26
        f = background.copy()
        f[y:y + 20, x:x + 20] = texture
        frames.append(f)
        boxes.append((x, y, 20, 20))
    return np.stack(frames), np.array(boxes, dtype=float)


def _write_video(path: pathlib.Path, frames: np.ndarray) -> None:
    import cv2

    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (W, H))
    for f in frames:
        out.write(cv2.cvtColor(f, cv2.COLOR_GRAY2BGR))
    out.release()


def make_inputs(folder: pathlib.Path) -> None:
    """The input files every document's examples may name (see the module docstring)."""
    import cv2

    frames, boxes = _frames()
    t_us = np.round(np.arange(N_FRAMES) * 1e6 / FPS).astype(np.int64)
    _write_video(folder / "video.mp4", frames)
    (folder / "frames").mkdir()
    for k, f in enumerate(frames):
        cv2.imwrite(str(folder / "frames" / f"frame_{k:03d}.png"), f)
    (folder / "times.txt").write_text("".join(f"{t}\n" for t in t_us))
    np.savez(folder / "clip.npz", frames=frames, frame_ts=t_us)
    (folder / "tracking").mkdir()
    for name, flip in (("left_right", False), ("right_left", True)):
        clip = frames[:, :, ::-1] if flip else frames
        b = boxes.copy()
        if flip:
            b[:, 0] = W - b[:, 0] - b[:, 2]
        _write_video(folder / "tracking" / f"{name}.mp4", np.ascontiguousarray(clip))
        np.savetxt(folder / "tracking" / f"{name}.txt", b, fmt="%g")
    run([str(VENV_BIN / "neurosim"), "events", "simulate", "video.mp4", "-o", "recording.h5",
         "--seed", "1", "-q"], folder, "making recording.h5")
    np.savetxt(folder / "boxes.txt", np.column_stack([t_us, boxes]), fmt="%g",
               header="t_us x y w h")


# ---------------------------------------------------------------------------------- running


def run(cmd: list[str], cwd: pathlib.Path, what: str, stdin: str | None = None) -> str:
    env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               MPLBACKEND="Agg", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")  # documents run side by side
    env.pop("VIRTUAL_ENV", None)
    proc = subprocess.run(cmd, cwd=cwd, env=env, input=stdin, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        pytest.fail(f"{what} failed with exit code {proc.returncode}\n--- output ---\n{output}",
                    pytrace=False)
    return output


def console_commands(code: str) -> str:
    """The commands of a console block: its lines starting with '$ ' (continuations kept)."""
    commands, continuing = [], False
    for line in code.splitlines():
        if line.startswith("$ ") or continuing:
            text = line[2:] if line.startswith("$ ") and not continuing else line
            commands.append(text)
            continuing = text.rstrip().endswith("\\")
    return "\n".join(commands) + "\n"


def run_block(block: Block, folder: pathlib.Path) -> str:
    what = f"example {block.name}\n--- example ---\n{block.code}"
    if block.lang == "python":
        script = folder / f"_example_line{block.line}.py"
        script.write_text(block.code)
        return run([str(PYTHON), script.name], folder, what)
    code = console_commands(block.code) if block.lang == "console" else block.code
    return run(["bash", "-euo", "pipefail", "-c", code], folder, what)


WORKERS = max(1, min(2, os.cpu_count() or 1))  # documents run side by side, blocks of one in order


def run_document(doc: pathlib.Path, blocks: list[Block], folder: pathlib.Path,
                 results: dict[Block, concurrent.futures.Future]) -> None:
    """Make the inputs in ``folder``, then run ``blocks`` (one document's, in order) there."""
    try:
        make_inputs(folder)
    except BaseException as error:  # every block of the document reports it
        for block in blocks:
            results[block].set_exception(error)
        return
    for block in blocks:
        try:
            start = time.perf_counter()
            results[block].set_result(run_block(block, folder))
            if os.environ.get("NEUROSIM_DOCS_TIMES"):
                print(f"{block.name} {time.perf_counter() - start:.1f} s", file=sys.stderr)
        except BaseException as error:  # its own test reports it; later blocks still run
            results[block].set_exception(error)


@pytest.fixture(scope="module")
def example_results(request, tmp_path_factory):
    """Future of each selected block's output; each document's blocks up to its last selected one run."""
    selected = [item.callspec.params["block"] for item in request.session.items
                if getattr(item, "originalname", "") == "test_example_runs" and hasattr(item, "callspec")]
    last = {}
    for block in selected:
        if block.skip is None:
            last[block.doc] = max(last.get(block.doc, 0), block.line)
    plans = {doc: [b for b in ALL_BLOCKS if b.doc == doc and b.skip is None and b.line <= line]
             for doc, line in last.items()}
    results = {b: concurrent.futures.Future() for blocks in plans.values() for b in blocks}
    pool = concurrent.futures.ThreadPoolExecutor(WORKERS)
    for doc, blocks in sorted(plans.items(), key=lambda kv: -len(kv[1])):  # longest documents first
        pool.submit(run_document, doc, blocks, tmp_path_factory.mktemp(doc.stem), results)
    yield results
    pool.shutdown(wait=True)


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=[b.name for b in ALL_BLOCKS])
def test_example_runs(block: Block, example_results):
    if block.skip is not None:
        pytest.skip(f"not run as a test: {block.skip}")
    example_results[block].result()  # re-raises the block's failure with its text and output


# ---------------------------------------------------------------------------------- the harness


def test_extraction_finds_fences_languages_and_skip_markers(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# t\n\n```bash\necho one\n```\n\n<!-- skip-test: needs a network -->\n```python\nprint(2)\n```\n"
        "\n```toml\na = 1\n```\n\n````console\n$ echo three \\\n  four\nthree four\n````\n"
    )
    blocks = extract_blocks(doc)
    assert [(b.line, b.lang, b.skip) for b in blocks] == [
        (3, "shell", None), (8, "python", "needs a network"), (16, "console", None)]
    assert blocks[0].code == "echo one\n"
    assert console_commands(blocks[2].code) == "echo three \\\n  four\n"


def test_a_failing_example_fails_with_its_text_and_output(tmp_path):
    block = Block(tmp_path / "doc.md", 7, "shell", "echo visible-output\nfalse\n", None)
    with pytest.raises(pytest.fail.Exception) as failure:
        run_block(block, tmp_path)
    message = str(failure.value)
    assert "doc.md:7" in message and "false" in message and "visible-output" in message


GUIDES = ("events", "datasets", "tracker", "chip", "snn", "quant")


def test_every_document_has_examples():
    for guide in GUIDES:
        assert (PROJECT / "docs" / "guides" / f"{guide}.md").exists(), f"docs/guides/{guide}.md is missing"
    docs_with_blocks = {b.doc for b in ALL_BLOCKS}
    missing = [str(d.relative_to(PROJECT)) for d in DOCS if d not in docs_with_blocks]
    assert not missing, f"documents without a runnable example: {missing}"
