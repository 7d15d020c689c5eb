"""The README's Python example runs as written, on the real data."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(data_dir, monkeypatch, capsys):
    monkeypatch.setenv("PYROVAE_DATA", str(data_dir))
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no Python example"
    exec(compile(blocks[0], str(README), "exec"), {"__name__": "readme"})
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in lines] == ["DiagonalGaussian", "ConstantVariance"]
    for line in lines:
        elbo, log_px = (float(v) for v in re.findall(r"-\d+\.\d", line))
        assert -200 < elbo < log_px < -80  # trained, and the IW bound above the ELBO
