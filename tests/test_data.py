"""helpers.data: locating, verifying, downloading and parsing, good input and bad."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers import data
from helpers.data import USPSDataError
from tests.conftest import make_rows, need_real_data, write_gz


def test_parses_both_row_formats(tmp_path: Path) -> None:
    pixels, labels = data.parse(write_gz(tmp_path / "a.gz", make_rows(12, style="train")))
    assert pixels.shape == (12, 256) and pixels.dtype == np.float32
    assert labels.tolist() == [i % 10 for i in range(12)]
    pixels2, labels2 = data.parse(write_gz(tmp_path / "b.gz", make_rows(12, style="test")))
    assert labels2.tolist() == labels.tolist()
    np.testing.assert_allclose(pixels2, pixels, atol=1e-4)


def test_scaling_maps_background_to_zero_and_ink_to_one() -> None:
    pixels = np.array([[-1.0] * 128 + [1.0] * 128], dtype=np.float32)
    unit = data.to_images(pixels, "unit")
    assert unit.shape == (1, 16, 16, 1)
    assert unit.min() == 0.0 and unit.max() == 1.0
    assert data.to_images(pixels, "symmetric").min() == -1.0
    with pytest.raises(ValueError):
        data.to_images(pixels, "bogus")  # type: ignore[arg-type]


@pytest.mark.parametrize("row, message", [
    ("5 " + " ".join(["0"] * 255), "expected 257 values"),
    ("5 " + " ".join(["0"] * 255) + " abc", "not a number"),
    ("5 " + " ".join(["0"] * 255) + " nan", "NaN"),
    ("12 " + " ".join(["0"] * 256), "not a digit"),
    ("3.5 " + " ".join(["0"] * 256), "not a digit"),
    ("5 " + " ".join(["0"] * 255) + " 1.5", "must lie in [-1, 1]"),
])
def test_bad_rows_name_file_line_and_fix(tmp_path: Path, row: str, message: str) -> None:
    path = write_gz(tmp_path / "bad.gz", make_rows(3) + [row])
    with pytest.raises(USPSDataError) as err:
        data.parse(path)
    text = str(err.value)
    assert message in text and "bad.gz, line 4" in text and "replace it" in text


def test_truncated_and_non_gzip_files(tmp_path: Path) -> None:
    good = write_gz(tmp_path / "good.gz", make_rows(200)).read_bytes()
    (tmp_path / "cut.gz").write_bytes(good[: len(good) // 2])
    (tmp_path / "plain.gz").write_text("<html>404 Not Found</html>")
    for name in ("cut.gz", "plain.gz"):
        with pytest.raises(USPSDataError, match="not a complete gzip file"):
            data.parse(tmp_path / name)


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(USPSDataError, match="no rows"):
        data.parse(write_gz(tmp_path / "empty.gz", []))


def test_offline_folder_is_used_and_verified(fake_release: dict[str, Path], isolated: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USPS_DATA_DIR", str(fake_release["train"].parent))
    images, labels = data.load_usps("train")
    assert images.shape == (60, 16, 16, 1) and 0.0 <= images.min() and images.max() <= 1.0
    assert data.locate("test").origin == "USPS_DATA_DIR"


def test_checksum_mismatch_gives_both_hashes(fake_release: dict[str, Path], isolated: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    folder = fake_release["train"].parent
    write_gz(folder / "zip.train.gz", make_rows(60, 99))  # altered content, same name
    monkeypatch.setenv("USPS_DATA_DIR", str(folder))
    with pytest.raises(USPSDataError) as err:
        data.load_usps("train")
    text = str(err.value)
    assert data.SHA256["zip.train.gz"] in text and data.sha256_of(folder / "zip.train.gz") in text
    assert "SHA-256 mismatch" in text


def test_missing_offline_folder_says_what_to_do(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USPS_DATA_DIR", str(isolated / "nowhere"))
    with pytest.raises(USPSDataError, match="does not exist.*unset USPS_DATA_DIR"):
        data.locate("train")


def test_download_from_second_mirror_into_cache(fake_release: dict[str, Path], isolated: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    mirrors = (f"file://{isolated}/missing/", f"file://{fake_release['train'].parent}/")
    monkeypatch.setattr(data, "MIRRORS", mirrors)
    monkeypatch.setattr(data, "download", lambda name, target: DOWNLOAD(name, target, mirrors, progress=None))
    source = data.locate("train")
    assert source.origin == "download" and source.path.is_file()
    assert data.locate("train").origin == "cache"
    assert not list(source.path.parent.glob("*.part"))


DOWNLOAD = data.download


def test_failed_or_wrong_download_leaves_nothing(fake_release: dict[str, Path], isolated: Path,
                                                 tmp_path: Path) -> None:
    html = tmp_path / "html"
    html.mkdir()
    (html / "zip.train.gz").write_text("<html>Service unavailable</html>")
    target = isolated / "cache" / "data" / "zip.train.gz"
    with pytest.raises(USPSDataError) as err:
        DOWNLOAD("zip.train.gz", target, (f"file://{tmp_path}/none/", f"file://{html}/"), progress=None)
    text = str(err.value)
    assert "Could not download zip.train.gz" in text and "USPS_DATA_DIR" in text
    assert "SHA-256 mismatch" in text
    assert list(target.parent.iterdir()) == []


def test_validation_split_is_stratified_and_disjoint() -> None:
    labels = np.repeat(np.arange(10), 50)
    fit, hold = data.validation_split(labels, 0.2, seed=3)
    assert len(hold) == 100 and not set(fit) & set(hold)
    assert np.bincount(labels[hold]).tolist() == [10] * 10


def test_real_files_have_published_counts_and_range() -> None:
    need_real_data()
    for split, n in (("train", 7291), ("test", 2007)):
        images, labels = data.load_usps(split)
        assert images.shape == (n, 16, 16, 1) and images.dtype == np.float32
        assert labels.min() == 0 and labels.max() == 9
        assert images.min() == 0.0 and images.max() == 1.0
    counts = np.bincount(data.load_usps("train")[1])
    assert counts.tolist() == [1194, 1005, 731, 658, 652, 556, 664, 645, 542, 644]


def test_interrupted_http_download_leaves_nothing(isolated: Path) -> None:
    """A real HTTP server on loopback that announces the whole file and hangs up half-way."""
    import http.server
    import threading

    class HangUp(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            self.wfile.write(b"\x1f\x8b" + b"0" * 5000)
            self.wfile.flush()
            self.connection.close()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HangUp)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    target = isolated / "cache" / "data" / "zip.test.gz"
    try:
        with pytest.raises(USPSDataError, match="Could not download zip.test.gz"):
            DOWNLOAD("zip.test.gz", target, (f"http://127.0.0.1:{server.server_address[1]}/",),
                     progress=None, timeout=10)
    finally:
        server.shutdown()
    assert list(target.parent.iterdir()) == []


def _serve(handler: type) -> tuple[object, str]:
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def test_connection_dropped_with_the_right_length_is_reported(fake_release: dict[str, Path],
                                                              isolated: Path) -> None:
    """The server announces the real file's length and hangs up half-way: the length check, not
    the checksum, must catch it, and nothing may be left in the cache."""
    import http.server

    body = fake_release["test"].read_bytes()

    class HalfFile(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.close()

        def log_message(self, *args: object) -> None:
            pass

    server, url = _serve(HalfFile)
    target = isolated / "cache" / "data" / "zip.test.gz"
    try:
        with pytest.raises(USPSDataError) as err:
            DOWNLOAD("zip.test.gz", target, (url,), progress=None, timeout=10)
    finally:
        server.shutdown()  # type: ignore[attr-defined]
    text = str(err.value)
    assert f"dropped after {len(body) // 2} of {len(body)} bytes" in text, text
    assert "SHA-256" not in text, "the checksum caught it, not the length check"
    assert list(target.parent.iterdir()) == []


def test_complete_http_download_is_accepted(fake_release: dict[str, Path], isolated: Path) -> None:
    """The same server sending the whole file: downloaded, verified and moved into place."""
    import http.server

    body = fake_release["test"].read_bytes()

    class WholeFile(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server, url = _serve(WholeFile)
    target = isolated / "cache" / "data" / "zip.test.gz"
    try:
        DOWNLOAD("zip.test.gz", target, (url,), progress=None, timeout=10)
    finally:
        server.shutdown()  # type: ignore[attr-defined]
    assert target.read_bytes() == body and [p.name for p in target.parent.iterdir()] == ["zip.test.gz"]


def test_fold_split_holds_out_every_image_once() -> None:
    labels = np.repeat(np.arange(10), 20)
    held = np.concatenate([data.fold_split(labels, 5, fold, seed=1)[1] for fold in range(5)])
    assert sorted(held.tolist()) == list(range(200))
    fit, hold = data.fold_split(labels, 5, 0, seed=1)
    assert not set(fit) & set(hold) and np.bincount(labels[hold]).tolist() == [4] * 10
    with pytest.raises(ValueError):
        data.fold_split(labels, 5, 5)
