"""Every code block of the README runs as written (issue 20), as doctests do.

The ```python and ```sh blocks run in order, each in its own subprocess, in one
temporary folder (a later block may use a file an earlier one wrote); ```text
blocks are output; a block of ``make`` commands (the set-up, which ``make test``,
the command running this test, is) or after a ``readme-test: skip`` comment is not run.
"""

import os
import pathlib
import re
import subprocess
import sys

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
RUN = {"python", "sh"}
KINDS = RUN | {"text"}


def readme_blocks(text):
    """``(line, language, code, skipped)`` for each fenced block of ``text``."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = re.match(r"^```(\S*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(1)
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise ValueError(f"README.md:{start + 1}: a code block that never ends")
        before = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        body = lines[start + 1:end]
        setup = lang == "sh" and all(ln.startswith("make ") for ln in body if ln.strip())
        blocks.append((start + 1, lang, "\n".join(body) + "\n",
                       "readme-test: skip" in before or setup))
        i = end + 1
    return blocks


def test_readme_blocks_parse():
    """Every block says what it is (a language the test knows); the parser sees them all."""
    text = README.read_text(encoding="utf-8")
    blocks = readme_blocks(text)
    assert len(blocks) == sum(1 for ln in text.splitlines() if re.match(r"^```\S", ln))
    unknown = [(line, lang) for line, lang, _, _ in blocks if lang not in KINDS]
    assert not unknown, f"README blocks without a known language (python, sh, text): {unknown}"
    assert readme_blocks("a\n```sh\nls\n```\n<!-- readme-test: skip -->\n```python\nx\n```\n") \
        == [(2, "sh", "ls\n", False), (6, "python", "x\n", True)]
    assert readme_blocks("```sh\nmake demo  # set-up\n\nmake test\n```\n")[0][3]


@pytest.mark.slow
def test_readme_code_blocks_run_as_written(tmp_path):
    blocks = [b for b in readme_blocks(README.read_text(encoding="utf-8")) if b[1] in RUN]
    assert sum(1 for b in blocks if not b[3]) >= 6  # the lab, core, multilabel, estimators, CLI, Dask
    env = dict(os.environ, MPLBACKEND="Agg",
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    for line, lang, code, skipped in blocks:
        if skipped:
            continue
        cmd = [sys.executable, "-c", code] if lang == "python" else ["sh", "-ec", code]
        res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=600)
        assert res.returncode == 0, (
            f"README.md:{line} ({lang} block) failed with status {res.returncode}:\n"
            f"{res.stdout[-2000:]}\n{res.stderr[-3000:]}")
