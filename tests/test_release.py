"""Released checkpoints by name, fetched from a local HTTP server the test starts.

The server on 127.0.0.1 serves checkpoints the test builds in the release's layout
(mmaction2: {'state_dict': {'backbone.net.*', 'cls_head.fc_cls.*'}, 'meta': ...}); it
can also cut a response short or answer 404. Nothing is downloaded from the internet.
"""

import hashlib
import http.server
import io
import os
import socket
import threading

import numpy as np
import pytest
import torch

import squeezetime_jax
import squeezetime_jax.convert as convert_cli
from squeezetime_jax.checkpoints import metadata as metadata_lib
from squeezetime_jax.checkpoints import restore
from squeezetime_jax.checkpoints.errors import CheckpointError
from squeezetime_jax.interop import release
from squeezetime_jax.interop.torch_model import SqueezeTimeTorch, randomize_batchnorm_
from squeezetime_jax.resources import kinetics400_class_names

TINY = dict(depth=10, widen_factor=0.25, pos_dims=(8, 4, 2, 1), num_frames=4)


def _release_bytes(num_classes: int, seed: int = 0) -> tuple[bytes, torch.nn.Module]:
    torch.manual_seed(seed)
    model = randomize_batchnorm_(SqueezeTimeTorch(num_classes=num_classes, **TINY), seed)
    buffer = io.BytesIO()
    # The release's own meta holds mmengine objects; a plain dict stands in for them.
    torch.save({"state_dict": model.state_dict(), "meta": {"epoch": 100}}, buffer)
    return buffer.getvalue(), model.eval()


class _Server:
    """http.server in a thread: GET /ckpts/<file> -> the bytes in `files`."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.truncate: set[str] = set()  # announce the full length, send half
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                name = self.path.rsplit("/", 1)[-1]
                if not self.path.startswith("/ckpts/") or name not in server.files:
                    self.send_error(404, "Not Found")
                    return
                data = server.files[name]
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(
                    data[: len(data) // 2] if name in server.truncate else data
                )

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/ckpts/"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def served():
    k400, k400_model = _release_bytes(400)
    hmdb51, hmdb51_model = _release_bytes(51, seed=1)
    server = _Server()
    server.files["SqueezeTime_K400_71.64.pth"] = k400
    server.files["SqueezeTime_HMDB51_65.56.pth"] = hmdb51
    yield server, {"k400": (k400, k400_model), "hmdb51": (hmdb51, hmdb51_model)}
    server.close()


@pytest.fixture
def cache(tmp_path, monkeypatch, served):
    monkeypatch.setenv(release.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.setenv(release.ENV_BASE_URL, served[0].url)
    monkeypatch.delenv(release.ENV_OFFLINE, raising=False)
    return tmp_path / "cache"


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/ckpts/"


def _logits(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x.transpose(0, 4, 1, 2, 3))).numpy()


def test_load_by_name_downloads_once_records_the_digest_then_works_offline(
    cache, served, monkeypatch, capsys
):
    server, built = served
    data, model = built["k400"]
    before = len(server.requests)
    loaded = squeezetime_jax.load("k400")
    assert server.requests[before:] == ["/ckpts/SqueezeTime_K400_71.64.pth"]
    path = cache / "SqueezeTime_K400_71.64.pth"
    assert path.read_bytes() == data
    digest = hashlib.sha256(data).hexdigest()
    assert (cache / (path.name + ".sha256")).read_text() == f"{digest}  {path.name}\n"
    err = capsys.readouterr().err
    assert "no SHA-256 of SqueezeTime_K400_71.64.pth is known" in err and digest in err
    # Nothing else: the temporary file was renamed into place.
    assert sorted(p.name for p in cache.iterdir()) == [path.name, path.name + ".sha256"]

    x = np.random.default_rng(0).standard_normal((1, 4, 32, 32, 3)).astype(np.float32)
    reference = _logits(model, x)
    assert np.abs(np.asarray(loaded(x)) - reference).max() <= 1e-4 * np.abs(reference).max()
    # The released recipe's labels and clip settings come with it.
    assert loaded.class_names == kinetics400_class_names()
    assert loaded.metadata.frame_interval == 4
    assert loaded.metadata.protocols["test"] == {
        "num_clips": 10,
        "num_crops": 3,
        "short_side": 224,
        "crop_size": 224,
    }

    # Offline: no server at all, the cache serves (and is checked against the digest).
    monkeypatch.setenv(release.ENV_BASE_URL, _closed_port_url())
    monkeypatch.setenv(release.ENV_OFFLINE, "1")
    again = squeezetime_jax.load("release:k400")
    assert np.array_equal(np.asarray(again(x)), np.asarray(loaded(x)))
    assert len(server.requests) == before + 1


def test_convert_from_release_and_init_from_resolution(cache, served, tmp_path):
    _, built = served
    out = tmp_path / "hmdb51"
    assert convert_cli.main(["from-release", "hmdb51", str(out)]) == 0
    converted = restore.restore(out)
    assert converted.config.num_classes == 51
    stored = metadata_lib.read(out)
    assert stored.protocols["test"]["short_side"] == 286
    assert stored.protocols["test"]["num_clips"] == 2
    assert stored.class_names is None  # no HMDB51 names ship with the package
    head = converted.variables["params"]["fc_cls"]["kernel"]
    expected = built["hmdb51"][1].cls_head.fc_cls.weight.detach().numpy().T
    np.testing.assert_array_equal(np.asarray(head), expected)
    # init_from=release:NAME resolves to the cached file; other values pass through.
    resolved = release.resolve("release:hmdb51")
    assert resolved == str(cache / "SqueezeTime_HMDB51_65.56.pth")
    assert release.resolve(str(out)) == str(out)


def test_no_network_http_error_and_truncation_are_clear_and_leave_nothing(
    cache, served, monkeypatch, capsys
):
    server, _ = served
    monkeypatch.setenv(release.ENV_BASE_URL, _closed_port_url())
    with pytest.raises(release.DownloadError, match="cannot reach .* No network"):
        release.fetch("k400", progress=False)

    monkeypatch.setenv(release.ENV_BASE_URL, server.url)
    with pytest.raises(release.DownloadError, match="HTTP 404"):
        release.fetch("k600", progress=False)
    assert convert_cli.main(["from-release", "k600", str(cache / "out")]) == 1
    err = capsys.readouterr().err
    assert "HTTP 404" in err and "Traceback" not in err

    server.truncate.add("SqueezeTime_K400_71.64.pth")
    try:
        with pytest.raises(release.DownloadError, match="truncated download, \\d+ of \\d+"):
            release.fetch("k400", progress=False)
    finally:
        server.truncate.clear()
    assert not cache.exists() or list(cache.iterdir()) == []

    monkeypatch.setenv(release.ENV_OFFLINE, "1")
    with pytest.raises(release.DownloadError, match="SQUEEZETIME_OFFLINE"):
        release.fetch("k400", progress=False)


def test_checksum_mismatches(cache, served, monkeypatch):
    server, built = served
    path = release.fetch("k400", progress=False)
    # A damaged cached file is refused on use.
    with open(path, "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02")
    with pytest.raises(release.ChecksumError, match="does not match the digest recorded"):
        release.fetch("k400", progress=False)
    # Downloaded again, the recorded digest still applies: the server now serves other
    # bytes under that name, and they are refused and not kept.
    os.remove(path)
    server.files["SqueezeTime_K400_71.64.pth"] = built["hmdb51"][0]
    try:
        with pytest.raises(release.ChecksumError, match="nothing was kept"):
            release.fetch("k400", progress=False)
    finally:
        server.files["SqueezeTime_K400_71.64.pth"] = built["k400"][0]
    assert not os.path.exists(path)
    # A published digest is checked from the first download on.
    known = release.Release("k400", "SqueezeTime_K400_71.64.pth", "x", sha256="0" * 64)
    os.remove(path + ".sha256")
    with pytest.raises(release.ChecksumError, match="published digest"):
        release.fetch("k400", progress=False, release=known)


def test_names_cache_location_and_unsupported(monkeypatch, tmp_path):
    monkeypatch.delenv(release.ENV_CACHE, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert release.cache_dir() == str(tmp_path / "xdg" / "squeezetime_jax" / "checkpoints")
    monkeypatch.setenv(release.ENV_CACHE, str(tmp_path / "mine"))
    assert release.cache_dir() == str(tmp_path / "mine")
    assert release.url(release.get("K400")).endswith("/SqueezeTime_K400_71.64.pth")
    with pytest.raises(CheckpointError, match="AVA 2.1 .* not supported"):
        release.get("ava")
    with pytest.raises(CheckpointError, match="in1k .*k400 .*k600 .*hmdb51"):
        release.get("k700")
    assert release.is_reference("release:in1k") and release.is_reference("k400")
    assert not release.is_reference(str(tmp_path))
