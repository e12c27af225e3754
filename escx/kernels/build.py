"""Compile escx's C kernels on first use and load them with ctypes.

The kernels are plain C (no Python or PyTorch headers), so a build takes a few seconds with the
system compiler (``$CC``, else ``cc``), and runs once per machine: the library is cached under
``$ESCX_CACHE_DIR`` (default ``~/.cache/escx``) in a folder named by a hash of the sources, the
compiler and the CPU's feature flags (the build targets this CPU with ``-march=native``). Builds
write to a temporary file and rename it into place, so concurrent processes never load a
partial library.

OpenMP: the library is linked against ``libgomp.so.1``, which resolves to the copy PyTorch has
already loaded, so the kernels share PyTorch's worker threads instead of starting a second pool
that would fight it for the cores.

``ESCX_NATIVE_KERNELS=0`` turns the kernels off; so does having no C compiler. escx then runs
the same computation with PyTorch operations (slower, same function).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from escx.perf import native_kernels_enabled

log = logging.getLogger(__name__)

SOURCES = ("window_attention.c", "layer_norm.c")
HEADERS = ("common.h",)
_HERE = Path(__file__).resolve().parent
_lock = threading.Lock()
_state: dict[str, object] = {}


def _flags() -> list[str]:
    flags = ["-O3", "-march=native", "-fno-math-errno", "-fopenmp", "-shared", "-fPIC"]
    if platform.machine() in ("x86_64", "AMD64"):
        flags.append("-mprefer-vector-width=512")  # GCC otherwise keeps AVX-512 CPUs at 256 bits
    return [*flags, "-Wno-psabi"]


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def cache_dir() -> Path:
    """Where built kernels are kept."""
    root = os.environ.get("ESCX_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "escx"


def _compiler_identity(compiler: str) -> str:
    done = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30)
    return done.stdout.splitlines()[0] if done.stdout else compiler


def _build(compiler: str) -> Path:
    digest = hashlib.sha256()
    for name in (*SOURCES, *HEADERS):
        digest.update((_HERE / name).read_bytes())
    for part in (_compiler_identity(compiler), " ".join(_flags()), _cpu_flags()):
        digest.update(part.encode())
    target = cache_dir() / "kernels" / digest.hexdigest()[:16] / "libescx_kernels.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=target.parent, suffix=".so.partial")
    os.close(fd)
    try:
        sources = [str(_HERE / name) for name in SOURCES]
        done = subprocess.run(
            [compiler, *_flags(), "-o", partial, *sources],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr else "failed")
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return target


def _declare(lib: ctypes.CDLL) -> None:
    ptr, i64, i32, f32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_float
    # qkv, out, bias_t, masks_t, windows, nh, nw, heads, hd, scale, bf16, threads
    lib.escx_window_attention.argtypes = [ptr] * 4 + [i64] * 3 + [i32, i32, f32, i32, i32]
    lib.escx_window_attention.restype = i32
    # x, y, gamma, beta, rows, c, eps, bf16, threads
    lib.escx_layer_norm.argtypes = [ptr] * 4 + [i64, i32, f32, i32, i32]
    lib.escx_layer_norm.restype = i32


def library() -> ctypes.CDLL | None:
    """The loaded kernel library, building it if needed; None when unavailable (see
    :func:`unavailable_reason`) or inside :func:`escx.perf.without_native_kernels`. Thread-safe;
    the outcome of the build is remembered for the process."""
    return _loaded() if native_kernels_enabled() else None


def unavailable_reason() -> str | None:
    """Why the kernels cannot be used in this process, or None when they can."""
    _loaded()
    return _state["reason"]  # type: ignore[return-value]


def _loaded() -> ctypes.CDLL | None:
    if "lib" not in _state:
        with _lock:
            if "lib" not in _state:
                _state["lib"], _state["reason"] = _load()
                if _state["reason"]:
                    log.info("escx native kernels off (%s); using PyTorch ops", _state["reason"])
    return _state["lib"]  # type: ignore[return-value]


def _load() -> tuple[ctypes.CDLL | None, str | None]:
    setting = os.environ.get("ESCX_NATIVE_KERNELS", "1").strip()
    if setting.lower() in ("0", "false", "no", "off"):
        return None, f"ESCX_NATIVE_KERNELS={setting}"
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        return None, "no C compiler found (set CC)"
    try:
        path = _build(compiler)
        lib = ctypes.CDLL(str(path))
        _declare(lib)
    except (OSError, RuntimeError, subprocess.SubprocessError) as error:
        return None, f"build failed: {error}"
    return lib, None
