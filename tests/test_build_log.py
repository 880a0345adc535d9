"""The build log's two quiet-making extensions (_ext/kernel_transport.py, _ext/build_log.py)."""

from __future__ import annotations

import logging

import pytest

from tests.conftest import REPO, import_ext


@pytest.fixture(scope="module")
def ext():
    return import_ext("kernel_transport", "build_log")


def test_kernels_are_started_with_curve_keys(ext) -> None:
    """With the default set, jupyter_client provisions CurveZMQ keys, so ipykernel has no reason
    to warn that the kernel runs over TCP without encryption."""
    kernel_transport, _ = ext
    zmq = pytest.importorskip("zmq")
    from jupyter_client.manager import KernelManager

    trait = KernelManager.class_traits()["transport_encryption"]
    before = trait.default_value
    try:
        assert kernel_transport.encrypt_kernel_transport() == bool(zmq.has("curve"))
        if zmq.has("curve"):
            assert KernelManager().transport_encryption == "auto"
    finally:
        trait.default_value = before


def test_only_the_book_s_own_overwritten_files_are_left_out(ext) -> None:
    _, build_log = ext
    keep = build_log._BookFileUpdated()

    def record(source: str, subtype: str = "copy_overwrite") -> logging.LogRecord:
        r = logging.LogRecord("sphinx.sphinx.util.osutil", logging.INFO, __file__, 1,
                              "Copying the source path %s to %s will overwrite data", (source, "/out"), None)
        r.subtype = subtype
        return r

    assert not keep.filter(record(str(REPO / "_static" / "demo" / "demo.js")))
    assert keep.filter(record("/elsewhere/theme.css"))
    assert keep.filter(record(str(REPO / "_static" / "x.js"), subtype="other"))
