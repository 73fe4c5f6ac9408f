"""The runtime never hangs or aborts: forks, threads, read-only installs, the numba cache.

Everything runs in subprocesses with a timeout: a hang fails the test (the whole process group is
killed) instead of hanging the suite, and an abort (SIGABRT / SIGTERM from a threading layer)
fails it with the child's stderr. Every subprocess samples the same small space and its outputs
must equal those of this (test) process: results depend neither on the threading layer, nor on
``NUMBA_NUM_THREADS``, nor on threads or forks.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import pickle
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

import densitydp as dd
from densitydp import _runtime

SOURCE = Path(dd.__file__).parent
TIMEOUT = 600  # seconds; generous for a cold numba cache on a shared 2-core machine

# the sampled workload, shared by this process and every subprocess
WORKLOAD = """
import hashlib
import numpy as np
import densitydp as dd

SPACE = dd.synthetic_space(n_words=200, dim=5, rng=0)
MECHANISMS = [
    dd.TruncatedGumbel(SPACE, epsilon=1000.0),
    dd.MultivariateLaplace(SPACE, epsilon=20.0),
    dd.TruncatedExponential(SPACE, epsilon=20.0, beta=1e-3),
    dd.ExponentialMechanism(SPACE, epsilon=20.0),
]
WORDS = np.arange(200)
SEEDS = range(6)


def run(seed):
    return [m.sample(WORDS, rng=seed).tolist() for m in MECHANISMS]


def digest(outputs):
    return hashlib.sha256(repr(outputs).encode()).hexdigest()
"""

namespace: dict[str, object] = {}
exec(WORKLOAD, namespace)
EXPECTED = namespace["digest"]([namespace["run"](seed) for seed in namespace["SEEDS"]])  # type: ignore[operator]


def available_layers() -> list[str]:
    layers = ["workqueue"]
    if importlib.util.find_spec("numba.np.ufunc.omppool") is not None:
        try:
            from numba.np.ufunc import omppool  # noqa: F401
        except ImportError:
            pass
        else:
            layers.append("omp")
    if _runtime.settings.tbb_available:
        layers.append("tbb")
    return layers


LAYERS = available_layers()


def run_python(
    script: str,
    *,
    env: dict[str, str] | None = None,
    preexec: list[str] | None = None,
    cwd: Path | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter; a hang past TIMEOUT kills its process group and
    fails the test."""
    command = [*(preexec or []), sys.executable, "-c", textwrap.dedent(script)]
    process = subprocess.Popen(
        command,
        env=env if env is not None else dict(os.environ),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # pool workers join the group, so a hang kills them too
    )
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"hung for {TIMEOUT} s; stderr:\n{stderr[-3000:]}")
    finally:
        # leftovers of the group (e.g. workers of a pool whose parent died)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
    result = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    if check:
        assert result.returncode == 0, (
            f"exit status {result.returncode}; stderr:\n{result.stderr[-3000:]}"
        )
    return result


def layer_env(layer: str | None, threads: int | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("NUMBA_THREADING_LAYER", None)
    if layer is not None:
        env["NUMBA_THREADING_LAYER"] = layer
    if threads is not None:
        env["NUMBA_NUM_THREADS"] = str(threads)
    return env


def last_json(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    return json.loads(result.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# 5. processes and threads

FORK_POOL = (
    WORKLOAD
    + """
import json, multiprocessing, numba

if __name__ == "__main__":
    parent = [run(seed) for seed in SEEDS]  # parallel kernels run in the parent first
    layer = numba.threading_layer()
    # the default start method on Linux up to Python 3.13, named so on every version
    with multiprocessing.get_context("fork").Pool(2) as pool:
        children = pool.map(run, SEEDS)
    print(json.dumps({"layer": layer, "parent": digest(parent), "children": digest(children)}))
"""
)


@pytest.mark.slow
@pytest.mark.parametrize("layer", LAYERS)
def test_fork_pool_after_sampling_does_not_hang(layer):
    report = last_json(run_python(FORK_POOL, env=layer_env(layer)))
    assert report == {"layer": layer, "parent": EXPECTED, "children": EXPECTED}


@pytest.mark.slow
def test_fork_pool_after_sampling_with_the_chosen_layer():
    """Without NUMBA_THREADING_LAYER densitydp picks tbb when it loads, else workqueue."""
    report = last_json(run_python(FORK_POOL, env=layer_env(None)))
    assert report["layer"] == ("tbb" if "tbb" in LAYERS else "workqueue")
    assert report["parent"] == report["children"] == EXPECTED


THREADS = (
    WORKLOAD
    + """
import json, threading, numba

N_THREADS = 6
barrier = threading.Barrier(N_THREADS)
results = {}

def worker(index):
    barrier.wait()  # all threads enter the (not yet launched) parallel kernels together
    for round in range(2):
        seed = (index + round) % len(SEEDS)
        results[index, round] = (seed, run(seed))

threads = [threading.Thread(target=worker, args=(i,)) for i in range(N_THREADS)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
sequential = [run(seed) for seed in SEEDS]
equal = all(outputs == sequential[seed] for seed, outputs in results.values())
print(json.dumps({
    "layer": numba.threading_layer(),
    "num_threads": numba.get_num_threads(),
    "threads_equal_sequential": equal,
    "calls": len(results),
    "digest": digest(sequential),
}))
"""
)


@pytest.mark.slow
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("layer", LAYERS)
def test_concurrent_threads_sample_like_one(layer, threads):
    report = last_json(run_python(THREADS, env=layer_env(layer, threads)))
    assert report == {
        "layer": layer,
        "num_threads": threads,
        "threads_equal_sequential": True,
        "calls": 12,
        "digest": EXPECTED,
    }


def test_lock_only_while_the_layer_may_be_workqueue():
    import numba

    namespace["run"](0)  # type: ignore[operator]
    lock = _runtime.parallel_call_lock()
    assert (lock is None) == (numba.threading_layer() != "workqueue")


def test_parallel_kernels_keep_their_dispatcher_attributes():
    from densitydp.mechanisms import _kernels

    kernel = _kernels.truncated_gumbel_select
    assert kernel.__name__ == "truncated_gumbel_select"
    assert callable(kernel.py_func)
    assert kernel.py_func is kernel.__wrapped__
    assert "parallel kernel" in repr(kernel)


# ---------------------------------------------------------------------------------------------
# 6. read-only installs


def read_only_copy(root: Path) -> Path:
    """A copy of the package under ``root/site`` (no caches), made read-only."""
    site = root / "site"
    shutil.copytree(SOURCE, site / "densitydp", ignore=shutil.ignore_patterns("__pycache__"))
    for path in [site, *site.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    return site


def make_writable(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def without_privileges() -> list[str]:
    """A command prefix under which file permissions hold.

    Tests may run as root, which ignores permissions (CAP_DAC_OVERRIDE): then the child runs
    as root *without* the capabilities that bypass them (``setpriv`` drops CAP_DAC_OVERRIDE,
    CAP_DAC_READ_SEARCH and CAP_FOWNER from the bounding set), so a file or folder without a
    write bit cannot be written, exactly as for an ordinary user. Switching to ``nobody``
    instead is not possible here: the interpreter lives under /root (mode 0700). Each child
    also proves the emulation worked by failing to write (see READ_ONLY_PROBE).
    """
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot make a folder unwritable")
    return [
        setpriv,
        "--bounding-set=-dac_override,-dac_read_search,-fowner",
        "--inh-caps=-all",
    ]


READ_ONLY_PROBE = """
import os, sys
for folder in (os.environ["HOME"], os.path.join(sys.argv[1], "densitydp")):
    try:
        open(os.path.join(folder, "probe"), "w").close()
    except OSError:
        pass
    else:
        raise SystemExit(f"{folder} is writable: the read-only emulation failed")
"""


def read_only_env(site: Path, home: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("NUMBA_", "XDG_", "DENSITYDP_", "PYTHON"))
    }
    env.update(PYTHONPATH=str(site), HOME=str(home), MPLCONFIGDIR=str(home / "mpl"))
    return env


@pytest.mark.slow
def test_read_only_install_with_an_unwritable_home(tmp_path):
    root = Path(tempfile.mkdtemp(prefix="densitydp-readonly-"))
    try:
        site = read_only_copy(root)
        home = root / "home"
        home.mkdir()
        home.chmod(0o555)
        env = read_only_env(site, home)
        prefix = without_privileges()
        script = (
            f"import sys; sys.argv = ['probe', {str(site)!r}]\n"
            + READ_ONLY_PROBE
            + WORKLOAD
            + """
import json, warnings
import densitydp, numba
from densitydp import _runtime, _jit
assert densitydp.__file__.startswith(sys.argv[1]), densitydp.__file__
print(json.dumps({
    "cache": _jit.CACHE,
    "refused": _runtime.settings.cache_refused,
    "digest": digest([run(seed) for seed in SEEDS]),
}))
"""
        )
        result = run_python(script, env=env, preexec=prefix)
        report = last_json(result)
        assert report["cache"] is False
        assert str(home) in report["refused"]
        assert report["digest"] == EXPECTED
        assert "CacheWarning" in result.stderr and "compiled in memory" in result.stderr
        assert "no locator available" not in result.stderr

        # the command line on a small embedding file
        words = [f"w{i}" for i in range(200)]
        space = namespace["SPACE"]
        embeddings = tmp_path / "embeddings.txt"
        embeddings.write_text(
            "".join(
                w + " " + " ".join(f"{x:.6f}" for x in v) + "\n"
                for w, v in zip(words, space.vectors, strict=True)  # type: ignore[attr-defined]
            )
        )
        text = tmp_path / "input.txt"
        text.write_text("w1 w2 w3, w4!\n")
        for path in (tmp_path, embeddings, text):
            path.chmod(0o755 if path.is_dir() else 0o444)
        cli = "import sys; from densitydp.cli import main; sys.argv[0] = 'densitydp'; main()"
        for arguments in (
            ["perturb", "--embeddings", str(embeddings), "-m", "gumbel", "-e", "1000"],
            ["perturb", "--embeddings", str(embeddings), "-m", "laplace", "-e", "20"],
        ):
            command = [*prefix, sys.executable, "-c", cli, *arguments, "--seed", "0", str(text)]
            done = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
            )
            assert done.returncode == 0, done.stderr[-3000:]
            assert len(done.stdout.split()) == 4, done.stdout
    finally:
        make_writable(root)
        shutil.rmtree(root)


# ---------------------------------------------------------------------------------------------
# 8. the numba compile cache

CACHE_REPORT = """
import json
import densitydp as dd
from densitydp import _jit, _runtime
space = dd.synthetic_space(n_words=50, dim=3, rng=0)
print(dd.TruncatedGumbel(space, epsilon=2000.0).sample([1, 2, 3], rng=0).tolist())
print(json.dumps({
    "cache": _jit.CACHE,
    "folder": str(_runtime.settings.cache_dir),
    "source": _runtime.settings.cache_source,
    "refused": _runtime.settings.cache_refused,
}))
"""


def cache_env(cache_home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")}
    if sys.platform.startswith("linux"):
        env["XDG_CACHE_HOME"] = str(cache_home)
    else:  # pragma: no cover - platformdirs uses ~/Library/Caches on macOS
        env["HOME"] = str(cache_home)
    env.update(extra)
    return env


def private_folder(cache_home: Path) -> Path:
    from densitydp._runtime import source_digest

    version = f"py{sys.version_info[0]}.{sys.version_info[1]}"
    return cache_home / "densitydp" / f"numba-{version}-{source_digest()}"


def test_the_cache_folder_changes_with_any_source_file(tmp_path):
    """numba checks a cached kernel against its own file only: a kernel calling an edited
    kernel of another module ran the stale callee. The folder name carries a digest of every
    source file, so any edit compiles afresh."""
    import shutil

    from densitydp import _runtime

    package = Path(_runtime.__file__).resolve().parent
    copy = tmp_path / "densitydp"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert _runtime.source_digest(copy) == _runtime.source_digest()
    assert _runtime.default_cache_dir().name.endswith(_runtime.source_digest())
    kernels = copy / "mechanisms" / "_cascade.py"
    kernels.write_text(kernels.read_text() + "\n# edited\n")
    assert _runtime.source_digest(copy) != _runtime.source_digest()
    (copy / "mechanisms" / "_cascade.py").rename(copy / "mechanisms" / "_cascade2.py")
    assert _runtime.source_digest(copy) != _runtime.source_digest()


def cached_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.suffix in (".nbi", ".nbc")]


pytestmark_linux = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="XDG_CACHE_HOME locates the cache on Linux"
)


@pytestmark_linux
@pytest.mark.slow
def test_kernels_are_cached_in_a_private_folder(tmp_path):
    result = run_python(CACHE_REPORT, env=cache_env(tmp_path))
    report = last_json(result)
    folder = private_folder(tmp_path)
    assert report == {"cache": True, "folder": str(folder), "source": "densitydp", "refused": None}
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(folder.parent.stat().st_mode) == 0o700
    assert any(p.name.startswith("_kernels.truncated_gumbel_select") for p in cached_files(folder))
    # a second process loads what the first compiled
    again = run_python(CACHE_REPORT, env=cache_env(tmp_path))
    assert again.stdout == result.stdout


@pytestmark_linux
@pytest.mark.slow
@pytest.mark.parametrize(
    ("unsafe", "reason"),
    [
        ("group-writable", "is writable by group or others (mode 770)"),
        ("other-writable", "is writable by group or others (mode 707)"),
        ("foreign", "is owned by another user (uid 65534)"),
        ("parent-group-writable", "is writable by group or others (mode 770)"),
        ("a-file", "is not a directory"),
    ],
)
def test_an_unsafe_folder_is_refused(tmp_path, unsafe, reason):
    folder = private_folder(tmp_path)
    folder.parent.mkdir(mode=0o700)
    if unsafe == "a-file":
        folder.write_text("")
    else:
        folder.mkdir(mode=0o700)
    if unsafe == "group-writable":
        folder.chmod(0o770)
    elif unsafe == "other-writable":
        folder.chmod(0o707)
    elif unsafe == "parent-group-writable":
        folder.parent.chmod(0o770)
    elif unsafe == "foreign":
        if os.geteuid() != 0:
            pytest.skip("needs root to give a folder to another user")
        os.chown(folder, 65534, 65534)
    result = run_python(CACHE_REPORT, env=cache_env(tmp_path))
    report = last_json(result)
    assert report["cache"] is False and report["folder"] == "None"
    assert reason in report["refused"]
    assert "CacheWarning" in result.stderr and str(folder) in result.stderr
    assert "compiled in memory" in result.stderr
    if folder.is_dir():
        assert cached_files(folder) == []


@pytestmark_linux
@pytest.mark.slow
def test_a_user_numba_cache_dir_is_respected_when_private(tmp_path):
    """NUMBA_CACHE_DIR set by the user is used when only the user can write it; a group- or
    other-writable one is refused like ours (numba unpickles what it finds there)."""
    chosen = tmp_path / "mine"
    chosen.mkdir()
    chosen.chmod(0o755)
    result = run_python(CACHE_REPORT, env=cache_env(tmp_path, NUMBA_CACHE_DIR=str(chosen)))
    report = last_json(result)
    assert report == {"cache": True, "folder": str(chosen), "source": "user", "refused": None}
    assert cached_files(chosen)
    assert not private_folder(tmp_path).exists()
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    result = run_python(CACHE_REPORT, env=cache_env(tmp_path, NUMBA_CACHE_DIR=str(shared)))
    report = last_json(result)
    assert report["cache"] is False and "writable by group or others" in report["refused"]
    assert "CacheWarning" in result.stderr and cached_files(shared) == []


@pytestmark_linux
@pytest.mark.slow
def test_a_cache_dir_set_in_numba_config_before_the_import_is_respected(tmp_path):
    chosen = tmp_path / "configured"
    script = f"import numba; numba.config.CACHE_DIR = {str(chosen)!r}\n" + CACHE_REPORT
    report = last_json(run_python(script, env=cache_env(tmp_path)))
    assert report == {"cache": True, "folder": str(chosen), "source": "user", "refused": None}
    assert cached_files(chosen)


@pytestmark_linux
@pytest.mark.slow
def test_an_unusable_user_numba_cache_dir_compiles_in_memory(tmp_path):
    """A folder under a regular file cannot be created (NotADirectoryError, even for root)."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    env = cache_env(tmp_path, NUMBA_CACHE_DIR=str(blocker / "numba"))
    result = run_python(CACHE_REPORT, env=env)
    report = last_json(result)
    assert report["cache"] is False and report["source"] == "user"
    assert "Not a directory" in report["refused"]
    assert "CacheWarning" in result.stderr


class _Planted:
    """Unpickling this creates the folder ``marker``: proof that a cache file was loaded."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytestmark_linux
@pytest.mark.slow
def test_cache_files_beside_the_sources_are_never_loaded(tmp_path):
    """numba's in-tree locator would unpickle ``__pycache__/<module>.<kernel>-<line>.py3X.nbi``
    of a writable package: plant a pickle there for every kernel and check it never runs."""
    site = tmp_path / "site"
    shutil.copytree(SOURCE, site / "densitydp", ignore=shutil.ignore_patterns("__pycache__"))
    marker = tmp_path / "planted-cache-was-loaded"
    planted = pickle.dumps(_Planted(str(marker)))
    # the index names of every kernel, as numba's in-tree locator spells them
    listing = run_python(
        """
        import densitydp
        from densitydp import _kernels
        from densitydp.mechanisms import _kernels as mechanism_kernels
        for module in (_kernels, mechanism_kernels):
            for value in vars(module).values():
                function = getattr(value, "py_func", None)
                if function is not None and function.__module__ == module.__name__:
                    stem = module.__name__.rsplit(".", 1)[-1]
                    print(module.__file__, stem, function.__qualname__,
                          function.__code__.co_firstlineno)
        """,
        env={**os.environ, "PYTHONPATH": str(site)},
    )
    major, minor = sys.version_info[:2]
    lines = listing.stdout.splitlines()
    assert len(lines) > 20
    for line in lines:
        path, stem, qualname, lineno = line.split()
        cache = Path(path).parent / "__pycache__"
        cache.mkdir(exist_ok=True)
        (cache / f"{stem}.{qualname}-{lineno}.py{major}{minor}.nbi").write_bytes(planted)
    # the planted pickle does run when loaded (the test would otherwise prove nothing)
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_Planted(str(control))))
    assert control.exists()

    env = cache_env(tmp_path / "home-cache", PYTHONPATH=str(site))
    assert json.loads(run_python(CACHE_REPORT, env=env).stdout.splitlines()[-1])["cache"]
    assert not marker.exists()


def test_import_is_quiet_when_the_cache_is_usable():
    """This process imported densitydp with a usable folder: no pending warnings left."""
    assert _runtime.settings.pending_warnings == []
