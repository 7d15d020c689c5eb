"""Reliability: interruption, kills, numerical faults, locks and a table of bad inputs.

Whatever happens to a run, the user gets one line saying what happened and what to
do, and every result written before is still there and still loadable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from pyrovae.cli import main
from pyrovae.config import ConfigError
from pyrovae.data import load_dataset
from pyrovae.run import RunFolder, load_run
from pyrovae.train import TrainingError, train

# a run long enough to be interrupted part-way, short enough for a test (~2-4 s)
RUN = [
    "--dataset",
    "digits",
    "--hidden",
    "64",
    "--latent",
    "4",
    "--batch-size",
    "10",
    "--epochs",
    "6",
    "--iw-samples",
    "0",
    "--no-progress",
    "--seed",
    "3",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYROVAE_MIRROR": "http://127.0.0.1:9"}
DROP = ("seconds", "eval_seconds")


def _cli(*args, wait=True):
    cmd = [sys.executable, "-m", "pyrovae.cli", *map(str, args)]
    if not wait:
        return subprocess.Popen(
            cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)


def _rows(path: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in DROP} for r in RunFolder(path).read_metrics()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, in a subprocess like the interrupted ones."""
    out = tmp_path_factory.mktemp("ref") / "run"
    done = _cli("train", *RUN, "--out", out)
    assert done.returncode == 0, done.stderr
    return _rows(out)


def _wait_for(predicate, timeout=180.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_sigint_checkpoints_marks_and_resumes_exactly(reference, tmp_path):
    out = tmp_path / "run"
    proc = _cli("train", *RUN, "--out", out, wait=False)
    assert _wait_for(lambda: len(RunFolder(out).read_metrics()) >= 1)
    time.sleep(0.1)  # part-way through the next epoch
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    errors = [ln for ln in err.splitlines() if ln.startswith("Error")]
    assert len(errors) == 1 and "resume with: pyrovae train --out" in errors[0]
    status = RunFolder(out).read_status()
    assert status["state"] == "interrupted"
    state = RunFolder(out).load_checkpoint()
    assert state["step"] == status["step"] and state["step"] > 0
    done = _cli("train", *RUN, "--out", out, "--resume")
    assert done.returncode == 0, done.stderr
    assert _rows(out) == reference
    assert RunFolder(out).read_status()["state"] == "complete"


def test_sigkill_at_random_moments_loses_nothing(reference, tmp_path):
    rng = random.Random(0)
    outcomes = []
    for trial in range(3):
        out = tmp_path / f"run{trial}"
        proc = _cli("train", *RUN, "--out", out, wait=False)
        assert _wait_for(lambda out=out: (out / "status.json").exists())
        time.sleep(rng.uniform(0.0, 2.0))
        proc.kill()
        proc.wait(timeout=30)
        if (out / "checkpoint.pt").exists():
            load_run(out)  # the last complete checkpoint is always loadable
        done = _cli("train", *RUN, "--out", out, "--resume")
        assert done.returncode == 0, done.stderr
        assert _rows(out) == reference
        outcomes.append(len(RunFolder(out).read_metrics()))
    assert len(outcomes) == 3


@pytest.fixture(scope="module")
def frey_tiny(data_dir):
    data = load_dataset("frey", data_dir=data_dir, download=False)
    return dataclasses.replace(
        data, train=data.train[:20], valid=data.valid[:20], test=data.test[:20]
    )


UNBOUNDED = dict(
    dataset="frey",
    likelihood="gaussian-learned",
    latent_dim=2,
    hidden=[32],
    batch_size=20,
    epochs=30,
    iw_samples=0,
    lr=3.0,
)


def _finite_checkpoint(out: Path) -> dict:
    state = RunFolder(out).load_checkpoint()
    for tensor in [*state["model"].values(), *state["guide"].values()]:
        assert torch.isfinite(tensor).all()
    return state


def test_nan_stop_policy_names_the_fault_and_keeps_the_checkpoint(frey_tiny, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(TrainingError) as info:
        train(UNBOUNDED, out, dataset=frey_tiny, plots=False)
    message = str(info.value)
    assert "non-finite" in message and "epoch" in message and "step" in message
    assert "decoder" in message or "site" in message  # names the parameter or site
    assert "\n" not in message
    state = _finite_checkpoint(out)
    assert state["epoch"] >= 1
    assert RunFolder(out).read_status()["state"] == "failed"
    assert len(RunFolder(out).read_metrics()) == state["epoch"]


def test_nan_rollback_policy_halves_the_rate_a_bounded_number_of_times(frey_tiny, tmp_path):
    out = tmp_path / "run"
    config = {**UNBOUNDED, "nan_policy": "rollback", "max_rollbacks": 2}
    with pytest.raises(TrainingError, match="after 2 rollbacks"):
        train(config, out, dataset=frey_tiny, plots=False)
    state = _finite_checkpoint(out)
    assert state["optimizer"]["param_groups"][0]["lr"] == 3.0  # the good state's rate
    # a sane rate trains the same model without a rollback
    result = train({**config, "lr": 1e-3, "epochs": 3}, dataset=frey_tiny, plots=False)
    assert "rollbacks" not in result.summary and all(r["lr"] == 1e-3 for r in result.metrics)


def test_a_second_writer_is_refused(tmp_path):
    out = tmp_path / "run"
    with RunFolder(out).locked():
        result = CliRunner().invoke(main, ["train", *RUN, "--out", str(out)])
    assert result.exit_code == 1
    assert "in use by process" in result.output
    assert not (out / "checkpoint.pt").exists()
    # a lock left by a dead process is taken over
    (out / ".lock").write_text("999999999")
    result = CliRunner().invoke(main, ["train", *RUN, "--epochs", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert not (out / ".lock").exists()


def test_nan_in_the_data_is_refused():
    data = load_dataset("digits")
    bad = dataclasses.replace(data, train=data.train.clone())
    bad.train[3, 5] = math.nan
    with pytest.raises(ConfigError, match="NaN"):
        train({"dataset": "digits", "epochs": 1}, dataset=bad, plots=False)


# -- the table of bad inputs -------------------------------------------------------------------


def _tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def bad_input_world(tmp_path_factory, data_dir):
    return make_bad_input_world(tmp_path_factory.mktemp("bad"), data_dir)


def make_bad_input_world(root: Path, data_dir: Path) -> Path:
    """Two small runs and the broken files and folders the bad-input cases use."""
    runner = CliRunner()
    for name in ("good", "other"):
        extra = ["--latent", "3"] if name == "other" else []
        r = runner.invoke(main, ["train", *RUN, "--epochs", "1", *extra, "--out", str(root / name)])
        assert r.exit_code == 0, r.output
    foreign = root / "foreign"
    shutil.copytree(root / "good", foreign)
    shutil.copyfile(root / "other" / "checkpoint.pt", foreign / "checkpoint.pt")
    truncated = root / "truncated"
    shutil.copytree(root / "good", truncated)
    ckpt = truncated / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:200])
    (root / "empty-data").mkdir()
    corrupt = root / "corrupt-data" / "frey"
    corrupt.mkdir(parents=True)
    payload = bytearray((data_dir / "frey" / "frey_rawface.mat").read_bytes())
    payload[500] ^= 0xFF
    (corrupt / "frey_rawface.mat").write_bytes(bytes(payload))
    (root / "typo.toml").write_text('dataset = "digits"\nlatnt_dim = 3\n')
    (root / "badname.toml").write_text('likelihood = "gausian"\n')
    (root / "bool.toml").write_text("lr = true\n")
    (root / "scalar.toml").write_text("hidden = 400\n")
    (root / "latin1.toml").write_bytes('dataset = "digits" # caf\xe9\n'.encode("latin-1"))
    (root / "table.toml").write_text("[model]\nlatent_dim = 3\n")
    (root / "twice.toml").write_text("latent = 3\nlatent_dim = 3\n")
    (root / "a-file").write_text("not a folder\n")
    return root


def bad_input_cases(root: Path, data_dir: Path) -> list[tuple[str, list[str], list[str]]]:
    """(what, command, fragments the one error line must contain)."""
    new = str(root / "new")
    return [
        ("unknown dataset", ["train", "--dataset", "nope", "--out", new], ["'nope'", "digits"]),
        (
            "unknown likelihood in a config",
            ["train", "--config", str(root / "badname.toml"), "--out", new],
            ["unknown likelihood 'gausian'"],
        ),
        ("unknown guide", ["train", *RUN, "--guide", "nope", "--out", new], ["--guide"]),
        ("latent size 0", ["train", *RUN, "--latent", "0", "--out", new], ["latent_dim"]),
        (
            "negative hidden width",
            ["train", *RUN, "--hidden", "-4", "--out", new],
            ["positive integers"],
        ),
        ("batch size 0", ["train", *RUN, "--batch-size", "0", "--out", new], ["batch_size"]),
        ("negative epochs", ["train", *RUN, "--epochs", "-1", "--out", new], ["epochs"]),
        ("zero particles", ["train", *RUN, "--particles", "0", "--out", new], ["particles"]),
        ("zero learning rate", ["train", *RUN, "--lr", "0", "--out", new], ["lr"]),
        ("beta < 0", ["train", *RUN, "--beta", "-0.5", "--out", new], ["beta"]),
        (
            "variance floor <= 0",
            ["train", *RUN, "--likelihood", "bounded-gaussian", "--floor", "0", "--out", new],
            ["floor"],
        ),
        (
            "I_max <= 0",
            ["train", *RUN, "--likelihood", "baggins", "--info-max", "-1", "--out", new],
            ["info_max"],
        ),
        (
            "grey data, strict Bernoulli",
            ["train", *RUN, "--likelihood", "bernoulli", "--out", new],
            ["binary data"],
        ),
        (
            "data of the wrong width",
            ["evaluate", str(root / "good"), "--dataset", "mnist", "--data-dir", str(data_dir)],
            ["64 dimensions", "784"],
        ),
        ("checkpoint of another model", ["evaluate", str(root / "foreign")], ["another model"]),
        (
            "truncated checkpoint",
            ["evaluate", str(root / "truncated")],
            ["not a readable pyrovae checkpoint"],
        ),
        ("run folder that does not exist", ["evaluate", str(root / "missing")], ["does not exist"]),
        (
            "config key typo",
            ["train", "--config", str(root / "typo.toml"), "--out", new],
            ["latnt_dim", "latent_dim"],
        ),
        (
            "data folder without the files",
            [
                "train",
                *RUN,
                "--dataset",
                "mnist",
                "--data-dir",
                str(root / "empty-data"),
                "--out",
                new,
            ],
            ["mnist", "empty-data"],
        ),
        (
            "file failing its checksum",
            [
                "train",
                *RUN,
                "--dataset",
                "frey",
                "--data-dir",
                str(root / "corrupt-data"),
                "--out",
                new,
            ],
            ["frey_rawface.mat"],
        ),
        (
            "output folder holding another run",
            ["train", *RUN, "--out", str(root / "good")],
            ["already holds a run", "--resume"],
        ),
        (
            "resume and overwrite together",
            ["train", *RUN, "--out", str(root / "good"), "--resume", "--overwrite"],
            ["contradict"],
        ),
        ("CUDA without CUDA", ["train", *RUN, "--device", "cuda", "--out", new], ["CUDA"]),
        ("manifold of a 4-D latent space", ["manifold", str(root / "good")], ["2-D"]),
        (
            "unknown NaN policy",
            ["train", *RUN, "--nan-policy", "pray", "--out", new],
            ["--nan-policy"],
        ),
        *[
            (f"TOML: {what}", ["train", "--config", str(root / toml), "--out", new], frags)
            for what, toml, frags in [
                ("a boolean for a number", "bool.toml", ["lr must be a positive number"]),
                ("a scalar for a list", "scalar.toml", ["hidden must be a list of integers"]),
                ("not UTF-8", "latin1.toml", ["latin1.toml is not UTF-8"]),
                ("a table", "table.toml", ["has a table [model]"]),
                ("one option under two names", "twice.toml", ["latent_dim is given twice"]),
            ]
        ],
        ("evaluate a file", ["evaluate", str(root / "a-file")], ["is a file, not a run folder"]),
        (
            "a model too large for memory",
            ["train", *RUN, "--latent", "1000000000", "--out", new],
            ["parameters and needs about", "reduce --latent-dim"],
        ),
        (
            "an output folder under a file",
            ["train", *RUN, "--out", str(root / "a-file" / "run")],
            ["Not a directory", "a-file"],
        ),
        (
            "an output folder that cannot exist",
            ["train", *RUN, "--out", "/proc/pyrovae-no-such-dir/run"],
            ["cannot write or read /proc/pyrovae-no-such-dir"],
        ),
        (
            "evaluation chunk of 0",
            ["evaluate", str(root / "good"), "--chunk-size", "0"],
            ["--chunk-size must be a positive integer"],
        ),
        (
            "BILBO without the constant guide",
            ["train", *RUN, "--objective", "bilbo", "--out", new],
            ["objective 'bilbo' needs guide 'constant'"],
        ),
        (
            "an auto-encoder with a rate",
            ["train", *RUN, "--guide", "deterministic", "--out", new],
            ["guide 'deterministic' needs beta 0"],
        ),
        (
            "IWAE with beta",
            ["train", *RUN, "--objective", "iwae", "--beta", "0.5", "--out", new],
            ["objective 'iwae' needs beta 1"],
        ),
        (
            "init-from without a Bayesian decoder",
            ["train", *RUN, "--init-from", str(root / "good"), "--out", new],
            ["init_from needs weights 'bayesian'"],
        ),
        ("unknown device", ["train", *RUN, "--device", "gpu", "--out", new], ["cuda:N"]),
        (
            "a mixture weight of 1",
            ["train", *RUN, "--weight-prior", "scale-mixture", "--mixture-pi", "1", "--out", new],
            ["mixture_pi must be a number in (0, 1)"],
        ),
        (
            "a negative milestone",
            ["train", *RUN, "--lr-milestones", "-1", "--out", new],
            ["positive integers"],
        ),
        ("an average of 1", ["train", *RUN, "--ema-decay", "1", "--out", new], ["ema_decay"]),
        ("zero threads", ["train", *RUN, "--threads", "0", "--out", new], ["threads"]),
        (
            "resume with a changed setting",
            ["train", "--out", str(root / "good"), "--resume", "--latent", "5"],
            ["different latent_dim", "--latent-dim"],
        ),
        ("unknown split", ["evaluate", str(root / "good"), "--split", "dev"], ["--split"]),
        ("zero samples to draw", ["sample", str(root / "good"), "--num", "0"], ["--num"]),
    ]


def test_bad_inputs_give_one_line_and_change_nothing(bad_input_world, data_dir, monkeypatch):
    root = bad_input_world
    monkeypatch.setenv("PYROVAE_MIRROR", "http://127.0.0.1:9")  # no download leaves the host
    before = _tree_digest(root)
    cases = bad_input_cases(root, data_dir)
    assert len(cases) >= 40
    for what, args, fragments in cases:
        result = CliRunner().invoke(main, args)
        assert result.exit_code not in (0, None), (what, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            what,
            result.exception,
        )
        errors = [ln for ln in result.output.splitlines() if ln.startswith("Error")]
        assert len(errors) == 1, (what, result.output)
        assert "Traceback" not in result.output
        for fragment in fragments:
            assert fragment in errors[0], (what, errors[0])
    assert _tree_digest(root) == before  # no file created, changed or deleted
    assert not (root / "new").exists()


if __name__ == "__main__":  # the table of bad inputs as it stands: case | message | exit code
    import tempfile

    data = Path(os.environ.get("PYROVAE_DATA", Path(__file__).parents[2] / "shared" / "data"))
    os.environ["PYROVAE_MIRROR"] = "http://127.0.0.1:9"
    with tempfile.TemporaryDirectory() as tmp:
        world = make_bad_input_world(Path(tmp), data)
        print("| bad input | what pyrovae says | exit code |\n|---|---|---|")
        for what, args, _ in bad_input_cases(world, data):
            result = CliRunner().invoke(main, args)
            line = next(ln for ln in result.output.splitlines() if ln.startswith("Error"))
            shown = line.replace(tmp, "RUNS").replace(os.getcwd(), ".")
            print(f"| {what} | `{shown}` | {result.exit_code} |")
