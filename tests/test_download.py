"""Downloads against a local HTTP server on 127.0.0.1 serving copies of the real files."""

from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import threading
from pathlib import Path

import pytest
import torch

from pyrovae.data import DataError, dataset_status, load_dataset
from pyrovae.data import download as download_module
from pyrovae.data.download import FILES, ensure_files, sha256_file
from pyrovae.data.mnist import IMAGES_MAGIC, LABELS_MAGIC, read_idx

T10K = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


class _Server:
    """A static file server on 127.0.0.1 that records the paths it was asked for."""

    def __init__(self, root: Path):
        self.requests: list[str] = []
        requests = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        handler = functools.partial(Handler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.httpd.shutdown()
            self.thread.join()
        self.httpd.server_close()


@pytest.fixture
def served(data_dir, tmp_path):
    """A folder laid out like a data folder with the small real files, ready to be served."""
    root = tmp_path / "served"
    (root / "mnist").mkdir(parents=True)
    (root / "frey").mkdir()
    shutil.copy(data_dir / "frey" / "frey_rawface.mat", root / "frey")
    for name in T10K:
        shutil.copy(data_dir / "mnist" / name, root / "mnist")
    return root


@pytest.fixture
def server(served):
    srv = _Server(served)
    yield srv
    srv.stop()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty per-user cache folder, selected through XDG_CACHE_HOME."""
    monkeypatch.delenv("PYROVAE_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "pyrovae"


@pytest.fixture(autouse=True)
def _no_internet(monkeypatch):
    """A download a test triggers by mistake goes to a closed local port, never the internet."""
    monkeypatch.setenv("PYROVAE_MIRROR", "http://127.0.0.1:9")


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


def test_download_into_cache_and_no_second_download(server, cache, data_dir, monkeypatch):
    monkeypatch.setenv("PYROVAE_MIRROR", server.url)
    frey = load_dataset("frey")  # no data_dir, no PYROVAE_DATA: the per-user cache
    dest = cache / "frey" / "frey_rawface.mat"
    assert server.requests == ["/frey/frey_rawface.mat"]
    assert dest.is_file() and _leftovers(dest.parent) == []
    assert dest.stat().st_mode & 0o444 == 0o444
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == FILES["frey"][0].sha256
    assert frey.source == str(dest.parent)
    reference = load_dataset("frey", data_dir, download=False)
    assert torch.equal(frey.train, reference.train) and torch.equal(frey.test, reference.test)

    load_dataset("frey")
    monkeypatch.setattr(download_module, "_hash_cache", {})  # as in a fresh process
    load_dataset("frey")
    assert server.requests == ["/frey/frey_rawface.mat"]
    [row] = [r for r in dataset_status() if r["dataset"] == "frey"]
    assert row["present"] and row["sha256_ok"] and row["path"] == str(dest)


def test_download_with_mirror_argument(server, tmp_path):
    paths = ensure_files("mnist", tmp_path / "data", mirror=server.url, names=T10K)
    assert sorted(server.requests) == sorted(f"/mnist/{name}" for name in T10K)
    assert paths[T10K[0]] == tmp_path / "data" / "mnist" / T10K[0]
    assert read_idx(paths[T10K[0]], IMAGES_MAGIC).shape == (10000, 28, 28)
    assert read_idx(paths[T10K[1]], LABELS_MAGIC).shape == (10000,)
    expected = {f.name: f.sha256 for f in FILES["mnist"]}
    assert all(sha256_file(paths[name]) == expected[name] for name in T10K)
    ensure_files("mnist", tmp_path / "data", mirror=server.url, names=T10K)
    assert len(server.requests) == 2


def test_tampered_download_is_refused_and_deleted(served, tmp_path):
    path = served / "mnist" / T10K[1]
    raw = bytearray(path.read_bytes())
    raw[100] ^= 0x01
    path.write_bytes(bytes(raw))
    actual = hashlib.sha256(raw).hexdigest()
    srv = _Server(served)
    try:
        with pytest.raises(DataError) as info:
            ensure_files("mnist", tmp_path, mirror=srv.url, names=[T10K[1]])
        assert srv.requests == [f"/mnist/{T10K[1]}"]
    finally:
        srv.stop()
    message = str(info.value)
    expected = {f.name: f.sha256 for f in FILES["mnist"]}[T10K[1]]
    assert T10K[1] in message and actual in message and expected in message
    assert "\n" not in message
    folder = tmp_path / "mnist"
    assert not (folder / T10K[1]).exists()
    assert list(folder.iterdir()) == []  # no partial or temporary file left behind


def test_network_failure_is_the_offline_error(served, tmp_path, monkeypatch):
    srv = _Server(served)
    url = srv.url
    srv.stop()  # nothing listens on that port any more
    monkeypatch.setenv("PYROVAE_MIRROR", url)
    with pytest.raises(DataError) as info:
        load_dataset("frey", tmp_path, download=True)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"could not download frey_rawface.mat from {url}/frey/")
    assert f"frey needs frey_rawface.mat in {tmp_path / 'frey'}" in message
    assert "https://cs.nyu.edu/~roweis/data/frey_rawface.mat" in message
    assert list((tmp_path / "frey").iterdir()) == []


def test_missing_on_server_is_an_error(server, tmp_path):
    with pytest.raises(DataError, match=r"could not download binarized_mnist_valid\.amat .*404"):
        ensure_files(
            "binarized_mnist", tmp_path, mirror=server.url, names=["binarized_mnist_valid.amat"]
        )
    assert server.requests == ["/binarized_mnist/binarized_mnist_valid.amat"]
    assert list((tmp_path / "binarized_mnist").iterdir()) == []


def test_no_request_without_download(server, tmp_path, monkeypatch):
    monkeypatch.setenv("PYROVAE_MIRROR", server.url)
    with pytest.raises(DataError, match="^frey needs frey_rawface.mat in "):
        load_dataset("frey", tmp_path, download=False)
    assert server.requests == []


def test_corrupt_present_file_is_not_replaced(server, data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("PYROVAE_MIRROR", server.url)
    (tmp_path / "frey").mkdir()
    bad = tmp_path / "frey" / "frey_rawface.mat"
    bad.write_bytes((data_dir / "frey" / "frey_rawface.mat").read_bytes()[:-10])
    with pytest.raises(DataError, match="frey_rawface.mat has sha256 .*delete it"):
        load_dataset("frey", tmp_path)
    assert server.requests == [] and bad.stat().st_size > 0
    bad.unlink()  # following the advice: delete it and load again
    assert load_dataset("frey", tmp_path).test.shape == (200, 560)
    assert server.requests == ["/frey/frey_rawface.mat"]
