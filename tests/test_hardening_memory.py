"""Refused requests leave nothing behind: the inputs of a failed call are freed when it ends, not by the
cycle collector (``webapp.errors``)."""

from __future__ import annotations

import gc
import tracemalloc
import weakref

import gradio as gr
import pytest

from editgan_core.pipeline import InputError
from webapp.errors import user_errors


class Payload:
    """A stand-in for a request's input that can be watched through a weak reference."""

    def __init__(self, nbytes: int) -> None:
        self.data = bytearray(nbytes)


def _deep_refusal(payload: Payload) -> None:
    try:
        float(f"{len(payload.data)} bytes")  # fails
    except ValueError as exc:  # a caught failure re-raised as a refusal: the frame <-> exception cycle
        raise InputError("refused") from exc


@user_errors
def refuse(payload: Payload) -> None:
    _deep_refusal(payload)


@user_errors
def crash(payload: Payload) -> None:
    local = payload  # noqa: F841 (kept in the frame on purpose)
    raise RuntimeError("unexpected")


@user_errors
def refuse_streaming(payload: Payload):
    yield 1
    _deep_refusal(payload)


@pytest.fixture
def no_collector():
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.parametrize("callback", [refuse, crash])
def test_a_refused_call_frees_its_input_without_the_collector(no_collector, callback):
    payload = Payload(1000)
    ref = weakref.ref(payload)
    with pytest.raises(gr.Error) as caught:
        callback(payload)
    del payload
    assert ref() is None, "the refused call's input is still referenced"
    assert caught.value.__context__ is None and caught.value.__cause__ is None


def test_a_refused_stream_frees_its_input_without_the_collector(no_collector):
    payload = Payload(1000)
    ref = weakref.ref(payload)
    gen = refuse_streaming(payload)
    del payload
    assert next(gen) == 1
    with pytest.raises(gr.Error):
        next(gen)
    del gen
    assert ref() is None


def test_forty_refused_two_megabyte_calls_return_memory_to_its_baseline(no_collector):
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        for _ in range(40):
            with pytest.raises(gr.Error):
                refuse(Payload(2 * 1024 * 1024))
        held = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    assert held < 1024 * 1024, f"{held / 2**20:.1f} MiB still held after 40 refused calls"
