"""The ``densitydp`` command: a thin layer over the public API (built on click)."""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import os
import re
import signal
import stat
import sys
import uuid
import warnings
from collections.abc import Callable, Iterator
from typing import IO, Any

import click
import numpy as np

from . import __version__
from ._io import WriteError
from .embeddings import EmbeddingSpace, load_glove
from .mechanisms import MECHANISMS, PrivacyWarning, build_mechanism
from .mechanisms.density import SAMPLERS
from .neighbors import DEFAULT_K, cache_dir
from .text import DEFAULT_MASK, UNKNOWN_POLICIES

#: Errors that come from bad user input: shown as one line, exit status 2 (a usage error, as
#: click's own). A failed write (WriteError) names the user's path, never a temporary file.
_USER_ERRORS = (
    ValueError,
    TypeError,
    KeyError,
    FileNotFoundError,
    ModuleNotFoundError,
    WriteError,
)

#: Exit status of a usage error: a bad option, argument, input file or output path.
USAGE_ERROR = 2


class InputError(click.ClickException):
    """A usage error found after parsing (bad input, unwritable output): one line, exit 2."""

    exit_code = USAGE_ERROR


def _one_line_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = command(*args, **kwargs)
            _flush_stdout()  # a full device must be reported here, not at the exit
            return result
        except _USER_ERRORS as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(_with_option_names(message)) from exc
        except OSError as exc:
            if exc.filename is None and exc.errno in _STDOUT_ERRNOS:
                _silence_stdout()  # what is buffered cannot be written either
                raise InputError(f"cannot write standard output: {exc.strerror or exc}") from exc
            raise

    return wrapper


#: errno values of a failed write without a file name: only standard output is written
#: without one (every file output goes through atomic_write, whose WriteError names it).
_STDOUT_ERRNOS = frozenset(
    getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EFBIG", "EIO") if hasattr(errno, name)
)


def _flush_stdout() -> None:
    stream = sys.stdout
    if stream is not None:
        with contextlib.suppress(ValueError):  # closed
            stream.flush()


def _with_option_names(message: str) -> str:
    """``message`` with the library's argument names (`encoding`, `max_proposals`, the
    embeddings file's `path`) replaced by the command's options (`--encoding`, ...)."""
    context = click.get_current_context(silent=True)
    if context is None:
        return message
    names: dict[str, str] = {}
    for parameter in context.command.params:
        flags = [flag for flag in getattr(parameter, "opts", []) if flag.startswith("--")]
        if isinstance(parameter, click.Option) and parameter.name and flags:
            names[parameter.name] = flags[0]
    embeddings = context.params.get("embeddings")
    if embeddings and repr(str(embeddings)) in message:  # from_file's `path` is --embeddings
        names["path"] = "--embeddings"

    def rename(match: re.Match[str]) -> str:
        return f"`{names[match.group(1)]}`" if match.group(1) in names else match.group(0)

    return re.sub(r"`([A-Za-z_][A-Za-z0-9_]*)`", rename, message)


def _space_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option(
        "--embeddings",
        type=click.Path(dir_okay=False),
        default=None,
        help="Embedding file instead of the bundled GloVe: GloVe, word2vec or fastText text, "
        "word2vec binary; plain, gzip, bz2 or xz (detected).",
    )(command)
    command = click.option(
        "--encoding",
        default="utf-8",
        show_default=True,
        expose_value=False,  # kept in the context for _load_space (no new parameter per command)
        callback=_encoding_checked,
        help="Text encoding of the words of --embeddings (ASCII-compatible).",
    )(command)
    command = click.option(
        "--words",
        "word_filter",
        type=click.Choice(["all", "alpha"]),
        default="all",
        show_default=True,
        help="alpha: keep only alphabetic words (no punctuation, numbers or junk rows), "
        "before --top.",
    )(command)
    return click.option(
        "--top",
        type=click.IntRange(min=2),
        default=None,
        help="Keep only the first N words (for GloVe: the N most frequent).",
    )(command)


def _encoding_checked(context: click.Context, parameter: click.Parameter, value: Any) -> Any:
    """``--encoding``: an ASCII-compatible text encoding, a usage error naming the option; kept
    in the context for _load_space."""
    from ._formats import check_encoding

    try:
        check_encoding(value)
    except (TypeError, ValueError) as exc:
        raise click.BadParameter(str(exc).replace("`encoding` ", "")) from None
    context.meta["densitydp.encoding"] = value
    return value


def _seed_option(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--seed`` (an int >= 0; without it fresh entropy, which the command prints)."""
    return click.option(
        "--seed",
        type=click.IntRange(min=0),
        default=None,
        help=f"Seed of {what}; without it fresh entropy is used (and printed).",
    )


def _scheduler_option(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--scheduler`` (a Dask scheduler address or ``local:N``; without it: this process)."""

    def checked(context: click.Context, parameter: click.Parameter, value: Any) -> Any:
        if value is None:
            return None
        from .distributed import check_scheduler

        try:
            check_scheduler(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc).replace("`scheduler` ", "")) from None
        return value

    return click.option(
        "--scheduler",
        default=None,
        callback=checked,
        metavar="tcp://HOST:PORT|local:N",
        help=f"Run {what} on a Dask cluster: the scheduler at that address, or a new local "
        "cluster of N worker processes (extra `dask`). The result is the one this process "
        "gives for the same seed.",
    )


@contextlib.contextmanager
def _cluster(scheduler: str | None) -> Iterator[Any]:
    """The client of ``--scheduler`` (None without it), closed on exit; a scheduler that does
    not answer is a usage error naming the option."""
    if scheduler is None:
        yield None
        return
    from .distributed import connect

    try:
        cluster = connect(scheduler)
        client = cluster.__enter__()
    except ConnectionError as exc:
        raise InputError(str(exc).replace("`scheduler`", "--scheduler")) from None
    with contextlib.ExitStack() as stack:
        stack.push(cluster)
        yield client


def _progress_option(when: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--progress/--no-progress`` (default None: shown ``when``)."""
    return click.option(
        "--progress/--no-progress", default=None, help=f"Progress bar (default: {when})."
    )


def _mechanism_options(purpose: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--mechanism`` (one of the named mechanisms) and ``--epsilon``."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        command = click.option(
            "--epsilon",
            "-e",
            type=float,
            required=True,
            callback=_positive_finite,
            help="Privacy parameter (metric).",
        )(command)
        return click.option(
            "--mechanism", "-m", type=click.Choice(MECHANISMS), required=True, help=purpose
        )(command)

    return decorate


def _positive_finite(context: click.Context, parameter: click.Parameter, value: Any) -> Any:
    """Refuse NaN, infinities and values <= 0 as a usage error (exit code 2) naming the
    option."""
    if value is not None and not (np.isfinite(value) and value > 0):
        raise click.BadParameter(f"must be a finite number > 0; got {value!r}.")
    return value


def _mask_token_checked(context: click.Context, parameter: click.Parameter, value: Any) -> Any:
    """The mask token's rules (non-empty, no line breaks) as a usage error naming the option."""
    from .embeddings import Vocabulary
    from .text import TextCodec

    try:
        TextCodec(Vocabulary(["x"]), mask_token=value)
    except ValueError as exc:
        raise click.BadParameter(str(exc).replace("`mask_token` ", "")) from None
    return value


def _density_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Options of the density-aware mechanisms (refused by the others)."""
    options = [
        click.option(
            "--prior-points",
            type=click.IntRange(min=2),
            default=None,
            help="Reference words of the KDE prior (Scott bandwidth; a seeded subsample; "
            "default: every word for density-laplace, 10,000 for prior-exponential).",
        ),
        click.option(
            "--max-proposals",
            type=click.IntRange(min=1),
            default=None,
            help="Proposals per token of --sampler budget (default 40).",
        ),
        click.option(
            "--delta",
            type=float,
            default=None,
            help="Total variation the certified chain may keep (default 1e-9).",
        ),
        click.option(
            "--max-steps",
            type=click.IntRange(min=1),
            default=None,
            help="Most steps per token of --sampler certified (default 100,000).",
        ),
        click.option(
            "--sampler",
            type=click.Choice(SAMPLERS),
            default=None,
            help="density-laplace: exact (default, tilt <= 1), budget (fixed proposals per "
            "token, tilt 1), certified (default for tilt > 1), chain (uncertified).",
        ),
        click.option(
            "--tilt",
            type=float,
            default=None,
            help="Prior exponent of the density-aware mechanisms (default 1).",
        ),
    ]
    for option in options:
        command = option(command)
    return command


#: Options of issue 14's mechanisms, passed to :func:`build_mechanism` as ``options``.
_FIELD_KEYS = ("convention", "lam", "threshold", "k", "mapping", "p", "sensitive_fraction")


def _field_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Options of the field's mechanisms (``--convention``, ``--lam``, ``--threshold``,
    ``--set-size``, ``--mapping``, ``--p``, ``--sensitive-fraction``; refused by the mechanisms
    that do not take them), handed to the command as one ``mechanism_options`` dict."""

    @functools.wraps(command)
    def with_options(*args: Any, **kwargs: Any) -> Any:
        given = {key: kwargs.pop(key) for key in _FIELD_KEYS}
        return command(*args, mechanism_options=given, **kwargs)

    options = [
        click.option(
            "--convention",
            type=click.Choice(["seed", "mldp"]),
            default=None,
            help="gumbel: candidates for a count k — seed (the word and its k nearest "
            "neighbours; default) or mldp (the word and k - 1, as mldp-text).",
        ),
        click.option(
            "--lam",
            type=float,
            default=None,
            help="Covariance weight of mahalanobis and vickrey-mahalanobis, in [0, 1] "
            "(default 0.2).",
        ),
        click.option(
            "--threshold",
            type=float,
            default=None,
            help="Vickrey threshold t in [0, 1] of vickrey and vickrey-mahalanobis (default 0.5).",
        ),
        click.option(
            "--set-size",
            "k",
            type=int,
            default=None,
            help="Output-set size K of custext and custext-plus, in [1, vocabulary size] "
            "(default 20).",
        ),
        click.option(
            "--mapping",
            type=click.Choice(["conservative", "top-k"]),
            default=None,
            help="Output sets of custext and custext-plus: conservative (shared sets, the "
            "paper's; default) or top-k (each word's own k nearest: no guarantee across sets).",
        ),
        click.option(
            "--p",
            "p",
            type=float,
            default=None,
            help="santext-plus: probability that a non-sensitive word is sanitised, in [0, 1] "
            "(default 0.3).",
        ),
        click.option(
            "--sensitive-fraction",
            type=float,
            default=None,
            help="santext-plus: fraction w of the vocabulary (its last rows, the least "
            "frequent) treated as sensitive, in (0, 1] (default 0.9).",
        ),
    ]
    for option in options:
        with_options = option(with_options)
    return with_options


def _check_destinations(**destinations: str | list[str] | None) -> None:
    """Check every file a command will write before the work starts (a finished audit must not
    be lost to a missing or unwritable folder, an unknown figure format or a clash at the end):
    its folder exists and is writable, it is not a folder nor an input file, a figure's
    format is one matplotlib writes, and no two outputs are the same file (symlinks resolved).
    A value may list several files written under one option (diagnose --plot writes two)."""
    seen: dict[str, tuple[str, str]] = {}  # resolved path -> (option, path as given)
    for option, given in destinations.items():
        flag = "--" + option.replace("_", "-")
        paths = [given] if isinstance(given, str) or given is None else list(given)
        for destination in paths:
            if destination is None or destination == "-":
                continue
            what = f"`{flag}` {destination!r}"
            if destination != paths[0]:
                what = f"`{flag}` {paths[0]!r}: the file {destination!r} it also writes"
            _check_destination(what, flag, destination)
            if option == "plot":
                from ._io import figure_format

                figure_format(destination, what)
            key = os.path.normcase(os.path.realpath(destination))
            other = seen.get(key) or next(
                (
                    entry
                    for path, entry in seen.items()
                    if os.path.exists(path)
                    and os.path.exists(key)
                    and os.path.samefile(path, key)  # hard links
                ),
                None,
            )
            if other is not None:
                raise ValueError(
                    f"{what} is the same file as `{other[0]}` {other[1]!r}; give each output "
                    "its own file."
                )
            seen[key] = (flag, destination)


def _check_destination(what: str, flag: str, destination: str) -> None:
    path = os.path.realpath(destination)  # a symlink is written through to its target
    _refuse_input_as_destination(flag, destination)
    if os.path.isdir(path):
        raise ValueError(f"{what} is a folder; give a file name.")
    if os.path.exists(path) and not os.path.isfile(path):  # a FIFO, a device: written to
        if not os.access(path, os.W_OK):
            raise ValueError(f"{what} is not writable.")
        return
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise ValueError(f"{what}: the folder {folder!r} does not exist.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{what}: the folder {folder!r} is not writable.")


def _refuse_input_as_destination(flag: str, destination: str) -> None:
    """Refuse a destination that is one of the command's input files (the embeddings, the
    text): writing it would replace the user's data (inputs are never modified)."""
    context = click.get_current_context(silent=True)
    if context is None or not os.path.exists(destination):
        return
    for label, source in (("the --embeddings file", context.params.get("embeddings")),
                          *(("the input file", path)
                            for path in context.params.get("input_paths") or ())):  # fmt: skip
        if (
            source
            and source != "-"
            and os.path.exists(source)
            and os.path.samefile(source, destination)
        ):
            raise ValueError(f"`{flag}` {destination!r} is {label} (inputs are never modified).")


def _refuse_stdin_as_output(output: str) -> None:
    """Refuse ``-o FILE < FILE``: the output would replace the input being read."""
    try:
        read = os.fstat(sys.stdin.buffer.fileno())
        written = os.stat(output)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return  # stdin is not a file (or closed), or the output does not exist yet
    if (read.st_dev, read.st_ino) == (written.st_dev, written.st_ino):
        raise ValueError(
            f"`--output` {output!r} is the file standard input reads from (the input is never "
            "modified)."
        )


def _refuse_stdout_onto_inputs(*inputs: tuple[str, str | None]) -> None:
    """Refuse a standard output that is one of the command's input files (``perturb IN >> IN``
    would read its own output and grow without end; ``>> EMBEDDINGS`` would append to the
    embeddings), as ``cat`` does ("input file is output file"): regular files only, compared
    by device and inode. ``inputs`` are ``(label, path)``; a path ``None`` is standard
    input."""
    if sys.stdout is None:
        return
    try:
        written = os.fstat(sys.stdout.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return  # not a file descriptor (a test runner's capture)
    if not stat.S_ISREG(written.st_mode):
        return
    for label, source in inputs:
        try:
            read = os.fstat(sys.stdin.fileno()) if source is None else os.stat(source)
        except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
            continue
        if (read.st_dev, read.st_ino) == (written.st_dev, written.st_ino):
            raise ValueError(
                f"standard output is {label} (input file is output file: the input is never "
                "modified); write to another file."
            )


def _load_space(embeddings: str | None, top: int | None, words: str = "all") -> EmbeddingSpace:
    alpha = words == "alpha"
    if embeddings is not None:
        _refuse_stdout_onto_inputs(("the --embeddings file", embeddings))
    if embeddings is None:
        return load_glove(top=top, words="alpha" if alpha else None)
    context = click.get_current_context(silent=True)
    encoding = context.meta.get("densitydp.encoding", "utf-8") if context else "utf-8"
    space = EmbeddingSpace.from_file(embeddings, encoding=encoding)
    if alpha:
        space = space.subset(str.isalpha)
    return space.top(top) if top is not None and top < len(space) else space


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="densitydp")
def main() -> None:
    """Density-aware differentially private word perturbation."""


@main.command()
@_space_options
@_progress_option("on a terminal")
@_one_line_errors
def info(embeddings: str | None, top: int | None, word_filter: str, progress: bool | None) -> None:
    """Describe the embedding space: size, dimension, min/max distance, cache.

    The exact min and max distances come from the all-pairs neighbour pass, which is cached on
    disk: the first call on the full 400k GloVe takes minutes, later calls are instant.
    """
    space = _load_space(embeddings, top, word_filter)
    click.echo(f"space         {space.name}")
    click.echo(f"words         {len(space):,}")
    click.echo(f"dimension     {space.dim}")
    click.echo(f"cache folder  {cache_dir()}")
    table = space.neighbors(min(DEFAULT_K, len(space)), progress=progress)
    click.echo(f"min distance  {space.min_distance():.6f}  (closest two distinct words)")
    click.echo(f"max distance  {space.max_distance():.6f}  (diameter)")
    kth = table.kth_distance()
    quartiles = np.percentile(kth, [25, 50, 75])
    click.echo(
        f"distance to neighbour {table.k - 1}: quartiles {quartiles[0]:.3f} / "
        f"{quartiles[1]:.3f} / {quartiles[2]:.3f}  (local density radius: small = dense)"
    )
    if table.n_exact_fallback:
        click.echo(f"rows rescanned exactly  {table.n_exact_fallback}")


@main.command()
@_mechanism_options("Which mechanism perturbs the words.")
@_space_options
@_seed_option("the perturbation")
@click.option(
    "--unknown",
    type=click.Choice(UNKNOWN_POLICIES),
    default="mask",
    show_default=True,
    help="Words outside the vocabulary (often names and places): replace them by "
    "--mask-token, drop them, keep them unchanged (no guarantee covers them), or fail.",
)
@click.option(
    "--mask-token",
    default=DEFAULT_MASK,
    show_default=True,
    callback=_mask_token_checked,
    help="What --unknown mask writes (non-empty, no line breaks).",
)
@_density_options
@_field_options
@_progress_option("on a terminal")
@click.argument(
    "input_paths",
    metavar="[INPUT]...",
    nargs=-1,
    type=click.Path(dir_okay=False, allow_dash=True),
    callback=lambda context, parameter, value: _expanded_inputs(value),
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, allow_dash=True),
    default=None,
    help="Output file, written atomically (default or '-': standard output; a symlink is "
    "written through, a FIFO or device such as /dev/null written directly).",
)
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Perturb each INPUT into this folder under its own name, one task per file, INPUT "
    "i seeded by the i-th child of the seed (needed for several INPUTs and --scheduler).",
)
@_scheduler_option("the files")
@_one_line_errors
def perturb(
    mechanism: str,
    epsilon: float,
    embeddings: str | None,
    top: int | None,
    word_filter: str,
    seed: int | None,
    unknown: str,
    mask_token: str,
    tilt: float | None,
    mechanism_options: dict[str, Any],
    sampler: str | None,
    delta: float | None,
    max_steps: int | None,
    max_proposals: int | None,
    prior_points: int | None,
    progress: bool | None,
    input_paths: tuple[str, ...],
    output: str | None,
    out_dir: str | None,
    scheduler: str | None,
) -> None:
    """Perturb the words of INPUT (a text file; standard input when absent).

    With --out-dir, each INPUT file is perturbed into that folder (same name), file i with
    the i-th child of the seed: the same bytes in this process and on a Dask cluster
    (--scheduler local:N or tcp://HOST:PORT), whatever its number of workers. An INPUT may be
    a quoted glob pattern ('corpus/**/*.txt'), expanded in sorted order.

    Words outside the vocabulary are masked by default (--unknown). A report goes to standard
    error: tokens perturbed, changed and unknown, and the claimed guarantee per line (basic
    composition: a line differing in one word, and in every word).

    Standard output gets exactly the bytes -o writes (undecodable input bytes and control
    characters as they are). Input is read in bounded chunks (memory bounded by bytes, not by
    lines); an interrupted run (SIGTERM, SIGHUP, SIGINT) leaves no temporary file.

    The density-aware Laplace (-m density-laplace) samples its tilted target exactly by default
    (tilt <= 1; guarantee 2 epsilon, delta 0); --sampler certified (the default for tilt > 1)
    runs the chain length that certifies --delta; --sampler chain is uncertified.
    """
    from ._io import WriteError, atomic_write

    def build() -> Any:
        return build_mechanism(
            mechanism,
            _load_space(embeddings, top, word_filter),
            epsilon,
            tilt=tilt,
            **mechanism_options,
            sampler=sampler,
            delta=delta,
            max_steps=max_steps,
            max_proposals=max_proposals,
            prior_points=prior_points,
        )

    if out_dir is not None or len(input_paths) > 1 or scheduler is not None:
        policy = {"unknown": unknown, "mask_token": mask_token, "progress": progress}
        _perturb_files(build, seed, input_paths, output, out_dir, scheduler, policy)
        return
    input_path = input_paths[0] if input_paths and input_paths[0] != "-" else None
    output = None if output == "-" else output
    _check_destinations(output=output)
    if input_path is None and sys.stdin is None:  # before minutes of loading
        raise InputError("standard input is closed: give an INPUT file.")
    if output is None and sys.stdout is None:
        raise InputError("standard output is closed: give -o FILE.")
    if output is None:  # `perturb IN >> IN`, `perturb < IN >> IN`
        label = "the file standard input reads from" if input_path is None else "the input file"
        _refuse_stdout_onto_inputs((label, input_path))
    if output is not None:
        if input_path is None:
            _refuse_stdin_as_output(output)  # before minutes of loading, not after
        elif os.path.exists(output) and os.path.samefile(input_path, output):
            raise ValueError(
                f"`--output` {output!r} is the input file (the input is never modified)."
            )
    chosen, generator = _announced(build, seed)
    options: dict[str, Any] = {"rng": generator, "unknown": unknown, "mask_token": mask_token}
    try:
        with (
            _input_stream(input_path) as reader,
            atomic_write(output, "wb") if output is not None else _stdout() as writer,
        ):
            report = _perturb_streams(reader, writer, chosen, input_path, progress, options)
    except KeyboardInterrupt:  # SIGINT: end as killed by it (exit status 130 in a shell)
        _die_by(signal.SIGINT)
        raise
    except BrokenPipeError:  # the reader of standard output went away (`| head`)
        _silence_stdout()
        sys.exit(141)
    except WriteError as exc:  # names the user's path (never a temporary file)
        raise InputError(exc.strerror or str(exc)) from exc
    click.echo(str(report), err=True)


def _announced(build: Callable[[], Any], seed: int | None) -> tuple[Any, Any]:
    """The mechanism of ``perturb`` and the generator of ``--seed``, both printed on standard
    error."""
    from ._rng import as_generator, seed_entropy

    chosen = build()
    generator = as_generator(seed)
    click.echo(f"{chosen!r}; seed entropy {seed_entropy(generator)['entropy']}", err=True)
    click.echo(f"guarantee: {chosen.privacy_bound()}", err=True)
    return chosen, generator


#: Up to this many files, ``perturb --out-dir`` prints each file's report; beyond, one summary.
FILES_REPORTED = 20


def _expanded_inputs(values: tuple[str, ...]) -> tuple[str, ...]:
    """INPUT arguments: existing files, ``-``, or quoted glob patterns (``'corpus/*.txt'``,
    ``**`` recursive) expanded here in sorted order — no argument-length limit of the shell."""
    import glob

    paths: list[str] = []
    for value in values:
        if value == "-" or os.path.exists(value) or not glob.has_magic(value):
            if value != "-" and not os.path.exists(value):
                raise click.BadParameter(f"Path {value!r} does not exist.", param_hint="INPUT")
            if os.path.isdir(value):
                raise click.BadParameter(f"{value!r} is a folder.", param_hint="INPUT")
            paths.append(value)
            continue
        found = sorted(p for p in glob.glob(value, recursive=True) if os.path.isfile(p))
        if not found:
            raise click.BadParameter(f"pattern {value!r} matches no file.", param_hint="INPUT")
        paths.extend(found)
    return tuple(paths)


def _perturb_files(
    build: Callable[[], Any],
    seed: int | None,
    input_paths: tuple[str, ...],
    output: str | None,
    out_dir: str | None,
    scheduler: str | None,
    options: dict[str, Any],
) -> None:
    """``perturb --out-dir``: many files, one task each (:func:`densitydp.distributed.
    perturb_files`), here or on ``--scheduler``'s cluster."""
    if out_dir is None:
        why = "several INPUT files need" if len(input_paths) > 1 else "--scheduler needs"
        raise click.UsageError(
            f"{why} --out-dir (files are the unit of work: each is perturbed into that "
            "folder under its own name)."
        )
    if output is not None:
        raise click.UsageError("give either -o/--output or --out-dir, not both.")
    if not input_paths or "-" in input_paths:
        raise click.UsageError("--out-dir needs INPUT files (standard input is one stream).")
    from pathlib import Path

    from .distributed import _refuse_inputs_as_outputs, _remove_leftovers, perturb_files

    _refuse_stdout_onto_inputs(*(("the input file", path) for path in input_paths))
    if not out_dir:
        raise click.BadParameter("must name a folder; got ''.", param_hint="--out-dir")
    targets = [os.path.join(out_dir, os.path.basename(path)) for path in input_paths]
    try:  # before minutes of loading
        _refuse_inputs_as_outputs(list(map(Path, input_paths)), list(map(Path, targets)))
    except ValueError as exc:
        raise InputError(str(exc)) from None
    chosen, generator = _announced(build, seed)
    tag = uuid.uuid4().hex[:12]  # this run's temporary files
    try:
        with _terminations_raise(), _cluster(scheduler) as client:
            _announce_cluster(client)
            paths, reports = perturb_files(
                list(input_paths),
                chosen,
                out_dir,
                rng=generator,
                client=client,
                return_report=True,
                _tag=tag,
                **options,
            )
    except _Terminated as exc:  # the cluster is closed now: nothing writes any more
        _remove_leftovers(targets, tag)
        _die_by(exc.signum)
        raise
    except KeyboardInterrupt:
        _remove_leftovers(targets, tag)
        _die_by(signal.SIGINT)
        raise
    except ValueError as exc:  # the Python API's names of what the command line calls INPUT
        raise ValueError(str(exc).replace("`paths`", "INPUT")) from None
    if len(reports) <= FILES_REPORTED:
        for source, path, report in zip(input_paths, paths, reports, strict=True):
            click.echo(f"{source} -> {path}", err=True)
            click.echo("  " + str(report).replace("\n", "\n  "), err=True)
        return
    tokens = sum(r.n_tokens for r in reports)
    perturbed = sum(r.n_perturbed for r in reports)
    unknown = sum(r.n_unknown for r in reports)
    one = max(r.one_word_epsilon for r in reports)
    every = max(r.all_words_epsilon for r in reports)
    click.echo(
        f"{len(reports):,} files into {out_dir}: {tokens:,} word tokens, {perturbed:,} perturbed, "
        f"{unknown:,} outside the vocabulary ({reports[0].unknown}); claimed per line (the worst "
        f"of all files), by basic composition: one word replaced: epsilon <= {one:,.4g}; every "
        f"word replaced: epsilon <= {every:,.4g}",
        err=True,
    )


class _Terminated(BaseException):
    """SIGTERM or SIGHUP during a cluster job: unwinds it (futures cancelled, the cluster
    closed, temporary files removed) before the process ends as killed by the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _terminations_raise() -> Iterator[None]:
    """While the block runs, SIGTERM and SIGHUP raise :class:`_Terminated` (ignored signals
    stay ignored)."""

    def handler(signum: int, frame: Any) -> None:
        raise _Terminated(signum)

    previous = {}
    for signum in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if signum is None or signal.getsignal(signum) is signal.SIG_IGN:
            continue
        previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, before in previous.items():
            signal.signal(signum, before)


def _announce_cluster(client: Any, err: bool = True) -> None:
    """One line on standard error: the scheduler and its workers (a warning with none)."""
    if client is None:
        return
    n_workers = len(client.scheduler_info()["workers"])
    click.echo(f"scheduler {client.scheduler.address}: {n_workers} worker(s)", err=err)
    if not n_workers:
        click.echo("warning: the scheduler has no worker yet; the job waits for one.", err=err)


def _audit_with(client: Any) -> Callable[..., Any]:
    """:func:`densitydp.audit`, or its Dask twin on ``client`` (the same report)."""
    if client is None:
        from .audit import audit as run_audit

        return run_audit
    from .distributed import audit as distributed_audit

    _announce_cluster(client)
    return functools.partial(distributed_audit, client=client)


def _input_stream(input_path: str | None) -> contextlib.AbstractContextManager[IO[bytes]]:
    """The input as a binary stream (standard input for None); read errors name the path."""
    if input_path is None:
        if sys.stdin is None:  # started with standard input closed (`<&-`)
            raise InputError("standard input is closed: give an INPUT file.")
        return contextlib.nullcontext(sys.stdin.buffer)
    try:
        return open(input_path, "rb")
    except OSError as exc:
        raise InputError(f"cannot read {input_path!r}: {exc.strerror}") from exc


@contextlib.contextmanager
def _stdout() -> Iterator[IO[bytes]]:
    if sys.stdout is None:  # started with standard output closed (`>&-`)
        raise InputError("standard output is closed: give -o FILE.")
    stream = _StandardOutput(sys.stdout.buffer)
    yield stream  # type: ignore[misc]
    stream.flush()


class _StandardOutput:
    """Standard output whose failed writes (a full device, a quota) are :class:`WriteError`
    naming standard output, never taken for a failure to read the input. A broken pipe stays
    a BrokenPipeError (``| head``: not an error)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    def _failed(self, exc: OSError) -> WriteError:
        _silence_stdout()  # Python's final flush would fail again, with a traceback
        error = WriteError(exc.errno or 0, f"cannot write standard output: {exc.strerror or exc}")
        error.filename = "<stdout>"
        return error

    def write(self, data: Any) -> int:
        try:
            return self._stream.write(data)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise self._failed(exc) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise self._failed(exc) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _perturb_streams(
    reader: IO[bytes],
    writer: IO[bytes],
    mechanism: Any,
    input_path: str | None,
    progress: bool | None,
    options: dict[str, Any],
) -> Any:
    """Perturb ``reader`` into ``writer`` (the same bytes for a file and standard output),
    with a progress bar in bytes on a terminal."""
    from tqdm.auto import tqdm

    from ._io import WriteError
    from .text import _perturb_stream

    size = None
    if input_path is not None and os.path.isfile(input_path):
        size = os.path.getsize(input_path)
    disable = None if progress is None else not progress
    name = os.path.basename(input_path) if input_path else "stdin"
    with (
        warnings.catch_warnings(),  # the report says it on stderr, once, without a traceback
        tqdm(total=size, unit="B", unit_scale=True, desc=name, disable=disable, leave=False) as bar,
    ):
        warnings.simplefilter("ignore", PrivacyWarning)
        try:
            return _perturb_stream(reader, writer, mechanism, bar=bar, **options)
        except (WriteError, BrokenPipeError):
            raise
        except OSError as exc:  # not of the write: of the read
            where = repr(input_path) if input_path else "standard input"
            raise InputError(f"cannot read {where}: {exc.strerror or exc}") from exc


def _die_by(signum: int) -> None:
    """End the process as killed by ``signum`` (the shell convention for interruptions)."""
    sys.stderr.flush()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _silence_stdout() -> None:
    """After a broken pipe, point standard output at /dev/null so that Python's final flush
    does not print a second error."""
    try:
        fileno = sys.stdout.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return  # not a file descriptor (a test runner's capture)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fileno)
    os.close(devnull)


#: Exit status of ``densitydp audit`` when the audited mechanism (or densitydp) crashed.
AUDIT_CRASHED = 4


def _crash_exits_with(status: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A crash (not a usage error, not a verdict) prints its traceback and exits with
    ``status``, so that it never reads as the command's own non-zero verdict."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return command(*args, **kwargs)
            except (click.ClickException, click.exceptions.Exit, SystemExit, KeyboardInterrupt):
                raise
            except _USER_ERRORS:
                raise
            except Exception as exc:
                import traceback

                traceback.print_exc()
                click.echo(f"Error: the {command.__name__} could not run: {exc!r}", err=True)
                raise SystemExit(status) from None

        return wrapper

    return decorate


def _mechanism_reference(context: click.Context, parameter: click.Parameter, value: Any) -> Any:
    """A named mechanism, or ``package.module:attribute`` (a user's factory or function),
    checked at parse time: a usage error (exit 2) names the option."""
    if value is None or value in MECHANISMS:
        return value
    if ":" not in value:
        raise click.BadParameter(
            f"must be one of {', '.join(MECHANISMS)} or package.module:factory; got {value!r}."
        )
    return _import_attribute(value)


def _import_attribute(reference: str) -> Any:
    """``package.module:attribute`` imported, the current folder first on the path (as
    ``python -m`` does)."""
    import importlib

    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise click.BadParameter(f"expected package.module:attribute; got {reference!r}.")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's module: any error while importing it
        raise click.BadParameter(f"cannot import {module_name!r}: {exc!r}") from None
    found: Any = module
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise click.BadParameter(f"{module_name!r} has no attribute {attribute!r}.")
        found = getattr(found, part)
    return found


def _audited_mechanism(
    chosen: Any,
    space: EmbeddingSpace,
    epsilon: float,
    interface: str | None,
    notion: str,
    options: dict[str, Any],
) -> tuple[Any, dict[str, Any]]:
    """The mechanism to audit and the keywords that make it auditable: a named one is built; a
    user's attribute is the mechanism function itself with ``--interface``, else a factory
    called as ``factory(space, epsilon)``."""
    from .mechanisms import PrivacyBound

    if isinstance(chosen, str):
        return build_mechanism(chosen, space, epsilon, **options), {}
    given = sorted(key for key, value in options.items() if value is not None)
    if given:
        raise InputError(
            f"mechanism options ({', '.join(given)}) apply to the named mechanisms only; "
            "--mechanism names a factory: give them to it yourself."
        )
    if interface is None:
        import inspect

        try:
            inspect.signature(chosen).bind(space, epsilon)
        except (TypeError, ValueError):
            raise TypeError(
                f"--mechanism must name a factory(space, epsilon) returning the mechanism; "
                f"{getattr(chosen, '__name__', type(chosen).__name__)} cannot be called so. "
                "For a mechanism function give --interface ids|words."
            ) from None
        try:
            chosen = chosen(space, epsilon)
        except Exception as exc:  # the user's factory failed: a crash, not a usage error
            from .audit import MechanismError

            raise MechanismError(
                f"--mechanism factory raised {exc!r} (if it is the mechanism function itself, "
                "give --interface ids|words)"
            ) from exc
        if not hasattr(chosen, "sample") and not callable(chosen):
            raise TypeError(
                f"--mechanism factory returned {type(chosen).__name__}, not a mechanism (an "
                "object with sample(word_ids, rng), or a function); for a mechanism function "
                "itself give --interface ids|words."
            )
    claim = PrivacyBound(notion, epsilon)  # type: ignore[arg-type]
    keywords: dict[str, Any] = {"space": space, "interface": interface}
    if interface is not None or not hasattr(chosen, "privacy_loss_bound"):
        keywords["claim"] = claim
    if hasattr(chosen, "sample"):  # an object: its own space
        keywords.pop("interface")
        if getattr(chosen, "space", None) is not None:
            keywords.pop("space")
    return chosen, keywords


@main.command()
@click.option(
    "--mechanism",
    "-m",
    required=True,
    callback=_mechanism_reference,
    help=f"Which mechanism to audit: one of {', '.join(MECHANISMS)}, or "
    "package.module:factory, a factory(space, epsilon) returning any object with "
    "space / sample(word_ids, rng) / privacy_loss_bound(w, w'); with --interface, "
    "package.module:function is the mechanism itself.",
)
@click.option(
    "--epsilon",
    "-e",
    type=float,
    required=True,
    callback=_positive_finite,
    help="Privacy parameter (metric); the claim of a user's function.",
)
@click.option(
    "--interface",
    type=click.Choice(["ids", "words"]),
    default=None,
    help="--mechanism names a function: fn(word_ids, rng) -> word_ids (ids) or "
    "fn(list_of_words) -> words with its own randomness (words).",
)
@click.option(
    "--notion",
    type=click.Choice(["metric", "pure"]),
    default="metric",
    show_default=True,
    help="The claim of a mechanism that states none: epsilon * d(w, w') (metric) or epsilon.",
)
@click.option(
    "--reference",
    type=click.Choice(MECHANISMS),
    default=None,
    help="Also test the audited mechanism's law against this one of ours (at --epsilon) on "
    "the words of the pairs.",
)
@click.option(
    "--pairs",
    type=click.Choice(["nearest", "stratified", "random"]),
    default="nearest",
    show_default=True,
    help="How pairs of words are chosen (words from the frequent part of the vocabulary).",
)
@click.option("--n-pairs", type=click.IntRange(min=1), default=50, show_default=True)
@click.option(
    "--samples",
    type=click.IntRange(min=2),
    default=200_000,
    show_default=True,
    help="Samples per word (half choose the event, half bound it).",
)
@click.option(
    "--confidence", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.95,
    show_default=True,
)  # fmt: skip
@click.option(
    "--min-tested",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Share of the pairs that must be tested for PASS (else INCONCLUSIVE).",
)
@_space_options
@_seed_option("the audit")
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the full report as JSON (atomically); dd.AuditReport.from_json reads it.",
)
@click.option(
    "--plot", type=click.Path(dir_okay=False), default=None, help="Save the report's figure."
)
@_progress_option("on long runs")
@_scheduler_option("the sampling and the exact losses")
@_one_line_errors
@_crash_exits_with(AUDIT_CRASHED)
@_field_options
def audit(
    mechanism_options: dict[str, Any],
    mechanism: Any,
    epsilon: float,
    interface: str | None,
    notion: str,
    reference: str | None,
    pairs: str,
    n_pairs: int,
    samples: int,
    confidence: float,
    min_tested: float,
    embeddings: str | None,
    top: int | None,
    word_filter: str,
    seed: int | None,
    json_path: str | None,
    plot: str | None,
    progress: bool | None,
    scheduler: str | None,
) -> None:
    """Audit a mechanism empirically against the privacy loss it claims.

    Prints one row per pair (claimed loss, sampled estimate, lower confidence bound, the event,
    exact loss for exact mechanisms) and a one-line verdict. Exit status: 0 PASS, 1 FAIL (a
    violation, a goodness-of-fit failure or a law that differs from --reference), 2 usage error
    (bad option, input or output path; nothing audited), 3 INCONCLUSIVE (too few pairs
    testable: the verdict says what sample size would test them), 4 internal error (the
    audited mechanism or densitydp failed; traceback on stderr).
    """
    from ._rng import as_generator, seed_entropy
    from .audit.blackbox import checked_mechanism

    _check_destinations(json=json_path, plot=plot)
    if interface is not None and isinstance(mechanism, str):
        raise click.BadParameter(
            "--interface is for a user's function (--mechanism package.module:function).",
            param_hint="--interface",
        )
    space = _load_space(embeddings, top, word_filter)
    chosen, keywords = _audited_mechanism(
        mechanism, space, epsilon, interface, notion, mechanism_options
    )
    chosen = checked_mechanism(chosen, needs_claim=True, **keywords)
    generator = as_generator(seed)
    click.echo(f"{chosen!r}; seed entropy {seed_entropy(generator)['entropy']}")
    from .audit.report import _claim_text

    click.echo(f"claims: {_claim_text(chosen)}")
    with _cluster(scheduler) as client:
        report = _audit_with(client)(
            chosen,
            pairs=pairs,
            n_pairs=n_pairs,
            n_samples=samples,
            confidence=confidence,
            rng=generator,
            reference=(
                None
                if reference is None
                else build_mechanism(reference, space, epsilon, **mechanism_options)
            ),
            min_tested=min_tested,
            progress=progress,
        )
    columns = ["word", "other", "distance", "claimed", "eps_hat", "eps_lower", "event", "n"]
    columns += ["testable", "violation"]
    if "exact_loss" in report.table:
        columns.insert(6, "exact_loss")
    click.echo(report.table[columns].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if report.goodness_of_fit is not None:
        failed = report.goodness_of_fit[~report.goodness_of_fit["passed"]]
        for row in failed.itertuples():
            click.echo(
                f"goodness of fit FAILED for {row.word}: p = {row.p_value:.3g} over {row.bins} "
                f"bins, {row.outside} draws outside the exact support"
            )
    if report.law is not None:
        click.echo(report.law.verdict())
    for note in report.notes:
        click.echo(f"note: {note}")
    if json_path is not None:
        report.to_json(json_path)
        click.echo(f"saved {json_path}")
    if plot is not None:
        report.plot(plot)
        click.echo(f"saved {plot}")
    click.echo(report.verdict())
    if report.exit_code:
        raise SystemExit(report.exit_code)


@main.command()
@click.option(
    "--mechanism", "-m", type=click.Choice(MECHANISMS), required=True, help="Which mechanism."
)
@click.option(
    "--target",
    "-t",
    required=True,
    help="N_w=0.5 (median fraction of draws returning the word, over frequent words) or "
    "changed=0.3 (share of the word tokens of --text that change).",
)
@click.option(
    "--text",
    "text_path",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Sample text for --target changed=... (one text per line).",
)
@click.option(
    "--samples",
    type=click.IntRange(min=1),
    default=1_000,
    show_default=True,
    help="Draws per word where the mechanism has no exact law (Laplace, density-aware).",
)
@_space_options
@_seed_option("the draws")
@_progress_option("on a terminal")
@_one_line_errors
@_field_options
def calibrate(
    mechanism_options: dict[str, Any],
    mechanism: str,
    target: str,
    text_path: str | None,
    samples: int,
    embeddings: str | None,
    top: int | None,
    word_filter: str,
    seed: int | None,
    progress: bool | None,
) -> None:
    """Find the epsilon at which a mechanism reaches a plausible-deniability target, and print
    the guarantee it claims there (see docs/choosing_epsilon.md)."""
    from .calibration import calibrate_epsilon

    name, _, value = target.partition("=")
    try:
        level = float(value)
    except ValueError:
        raise click.BadParameter(
            f"expected STATISTIC=VALUE such as N_w=0.5; got {target!r}.", param_hint="--target"
        ) from None
    space = _load_space(embeddings, top, word_filter)
    texts = None
    if text_path is not None:
        with open(text_path, encoding="utf-8", errors="surrogateescape") as stream:
            texts = [line for line in stream if line.strip()]
    factory: Any = mechanism
    if any(value is not None for value in mechanism_options.values()):

        def factory(space: EmbeddingSpace, epsilon: float) -> Any:
            return build_mechanism(mechanism, space, epsilon, **mechanism_options)

    result = calibrate_epsilon(
        factory,
        space,
        {name.strip(): level},
        texts=texts,
        n_samples=samples,
        rng=seed,
        progress=progress,
    )
    click.echo(str(result))


@main.command()
@_mechanism_options("Which mechanism to describe.")
@click.option("--word", "-w", "words", multiple=True, help="A word to describe (repeatable).")
@click.option(
    "--n-words",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Without --word: this many words drawn from the 10,000 most frequent.",
)
@click.option("--samples", type=click.IntRange(min=1), default=1_000, show_default=True)
@_space_options
@_seed_option("the draws")
@_one_line_errors
@_field_options
def stats(
    mechanism_options: dict[str, Any],
    mechanism: str,
    epsilon: float,
    words: tuple[str, ...],
    n_words: int,
    samples: int,
    embeddings: str | None,
    top: int | None,
    word_filter: str,
    seed: int | None,
) -> None:
    """Plausible deniability per word: N_w (fraction of draws returning the word itself) and
    S_w (distinct outputs), as in Feyisetan et al. (WSDM 2020)."""
    from ._rng import as_generator, seed_entropy
    from .audit import plausible_deniability

    space = _load_space(embeddings, top, word_filter)
    chosen = build_mechanism(mechanism, space, epsilon, **mechanism_options)
    generator = as_generator(seed)
    click.echo(f"{chosen!r}; seed entropy {seed_entropy(generator)['entropy']}")
    if words:
        ids = space.ids(list(words))
    else:
        ids = generator.choice(
            min(10_000, len(space)), size=min(n_words, len(space)), replace=False
        )
    table = plausible_deniability(chosen, ids, n_samples=samples, rng=generator)
    click.echo(table[["word", "N_w", "S_w"]].to_string(index=False))
    click.echo(
        f"median N_w {table['N_w'].median():.3f}, median S_w {table['S_w'].median():g} "
        f"({table['n_samples'].iloc[0]} draws per word)"
    )


@main.command()
@click.option("--word", "-w", required=True, help="The word whose chains are diagnosed.")
@click.option("--epsilon", "-e", type=float, required=True, help="Privacy parameter (metric).")
@click.option("--tilt", type=float, default=1.0, show_default=True, help="Prior exponent.")
@click.option(
    "--proposal",
    type=click.Choice(["independence", "random_walk"]),
    default="independence",
    show_default=True,
)
@click.option("--chains", type=click.IntRange(min=1), default=4, show_default=True)
@click.option(
    "--draws", type=click.IntRange(min=4), default=1_000, show_default=True, help="Per chain."
)
@click.option(
    "--prior-points",
    type=click.IntRange(min=2),
    default=None,
    help="Reference words of the KDE prior (Scott bandwidth; a seeded subsample; default: all).",
)
@_space_options
@_seed_option("the chains")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False),
    default=None,
    help="Save the trace plot here and the rank plot beside it: --plot NAME.SUFFIX also "
    "writes NAME-rank.SUFFIX (both checked before the work; SUFFIX a matplotlib format: png, "
    "pdf, svg, ...).",
)
@click.option("--strict", is_flag=True, help="Exit with status 1 when the chains did not converge.")
@_progress_option("on long runs")
@_one_line_errors
def diagnose(
    word: str,
    epsilon: float,
    tilt: float,
    proposal: str,
    chains: int,
    draws: int,
    prior_points: int | None,
    embeddings: str | None,
    top: int | None,
    word_filter: str,
    seed: int | None,
    plot: str | None,
    strict: bool,
    progress: bool | None,
) -> None:
    """Diagnose the Metropolis–Hastings chains of the density-aware Laplace mechanism's
    uncertified chain sampler (sampler="chain") for WORD.

    Prints the summary (mean, sd, bulk and tail ESS, R-hat, MCSE) of the noise radius and the
    prior's log density along the chains, the worst coordinate, the verdict, and next to them
    the rigorous bound on such a chain's total variation to the target and the steps the
    certified chain would need. Good mixing does not certify privacy: it only shows that the
    chains agree.
    """
    from pathlib import Path

    from ._rng import as_generator, seed_entropy
    from .diagnostics import ConvergenceWarning, plot_rank, plot_trace
    from .diagnostics import diagnose as run_diagnosis
    from .kde import KDEPrior
    from .mechanisms import DensityAwareLaplace

    _check_destinations(plot=None if plot is None else [plot, str(_rank_plot_path(plot))])
    space = _load_space(embeddings, top, word_filter)
    word_id = space.ids(word)  # the text path's case back-off; UnknownWordError names it
    prior = KDEPrior.fit(space, bandwidth="scott", max_points=prior_points, rng=0)
    with warnings.catch_warnings():  # the chain's PrivacyWarning: diagnosing it is the point
        warnings.simplefilter("ignore", PrivacyWarning)
        mechanism = DensityAwareLaplace(
            space, epsilon, prior, tilt=tilt, sampler="chain", n_steps=draws, proposal=proposal
        )
    generator = as_generator(seed)
    click.echo(f"{mechanism!r}")
    click.echo(f"seed entropy {seed_entropy(generator)['entropy']}")
    result = mechanism.chains(
        word_id, n_chains=chains, n_draws=draws, rng=generator, progress=progress
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        verdict = run_diagnosis(result)
    table = verdict.table
    extras = table.loc[list(result.extras)]
    click.echo(f"chains for {word!r}: acceptance rate " + ", ".join(
        f"{rate:.3f}" for rate in result.acceptance_rate
    ))  # fmt: skip
    click.echo(extras.to_string(float_format=lambda value: f"{value:.4g}"))
    coordinates = table.drop(index=list(result.extras))
    click.echo(
        f"position ({result.dim} coordinates): max R-hat {coordinates['r_hat'].max():.4f}, "
        f"min bulk ESS {coordinates['ess_bulk'].min():.0f}, "
        f"min tail ESS {coordinates['ess_tail'].min():.0f}"
    )
    click.echo(str(verdict))
    if tilt > 0.0 and proposal == "independence":
        bound = mechanism.certified_distance(word_id, draws, proposal="laplace")
        click.echo(
            f"certified total variation of one such chain after {draws} steps: <= {bound:.3g} "
            "(rigorous bound; R-hat and ESS above do not bound it)"
        )
    elif tilt > 0.0:
        click.echo("certified total variation: none (no bound for the random walk)")
    if tilt > 0.0:
        steps = float(
            DensityAwareLaplace(
                space, epsilon, prior, tilt=tilt, sampler="certified", max_steps=2**62
            ).certified_steps([word_id])[0]
        )
        exact = "the exact sampler (default) needs no chain" if tilt <= 1 else "no exact sampler"
        click.echo(f"{exact}; the certified mixture chain needs {steps:,.0f} steps for delta 1e-9")
    if plot is not None:
        trace_path, rank_path = Path(plot), _rank_plot_path(plot)
        plot_trace(result, path=trace_path)
        plot_rank(result, path=rank_path)
        click.echo(f"saved {trace_path} and {rank_path}")
    if strict and not verdict.converged:
        raise SystemExit(1)


def _rank_plot_path(plot: str) -> Any:
    """Where ``diagnose --plot NAME.SUFFIX`` saves the rank plot: ``NAME-rank.SUFFIX`` beside
    it (``.png`` when NAME has no suffix)."""
    from pathlib import Path

    trace_path = Path(plot)
    return trace_path.with_name(f"{trace_path.stem}-rank{trace_path.suffix or '.png'}")


@main.command()
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seed of the reference sample of words.",
)
@_one_line_errors
def demo(seed: int) -> None:
    """A short tour on the bundled GloVe: neighbours and local density, dense and sparse."""
    from ._demo import run_demo

    run_demo(seed=seed, echo=click.echo)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
