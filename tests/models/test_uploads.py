"""Uploads: valid .npz and .csv files become RawDatasets; hostile or broken ones raise SpecError only."""

import io
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from models import limits
from models.errors import SpecError
from models.uploads import read_csv, read_dataset_file, read_npz

REPO_ROOT = Path(__file__).resolve().parents[2]


def _npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def _npy(array: np.ndarray, **save_options: object) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, **save_options)  # type: ignore[arg-type]
    return buffer.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for member, content in members.items():
            archive.writestr(member, content)
    return buffer.getvalue()


def _npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    """A .npy header alone, free to claim any shape whatever data follows it."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def _with_declared_size(archive: bytes, file_size: int) -> bytes:
    """Rewrites the uncompressed size in the central directory entry of a one-member zip."""
    end_of_directory = archive.rindex(b"PK\x05\x06")
    (directory,) = struct.unpack_from("<I", archive, end_of_directory + 16)
    size_field = directory + 24
    return archive[:size_field] + struct.pack("<I", file_size) + archive[size_field + 4 :]


def _refusal(read: Callable[..., object], *args: object, **kwargs: object) -> str:
    with pytest.raises(SpecError) as caught:
        read(*args, **kwargs)
    return str(caught.value)


FEATURES = np.arange(12, dtype=np.float64).reshape(6, 2)


# ----------------------------------------------------------------------------------------------- valid npz


def test_read_npz_remaps_sparse_int_labels() -> None:
    data = read_npz(_npz(x=FEATURES, y=np.array([3, 7, 9, 3, 7, 9])), name="sparse")

    assert data.info.task == "classification"
    assert data.info.num_classes == 3
    assert data.info.classes == (3, 7, 9)
    assert all(type(c) is int for c in data.info.classes)
    assert data.y is not None and data.y.dtype == np.int64
    assert data.y.tolist() == [0, 1, 2, 0, 1, 2]
    assert data.x.dtype == np.float32 and data.x.shape == (6, 2)
    assert data.info.num_samples == 6 and data.info.sample_shape == (2,)


def test_read_npz_keeps_dense_bool_labels_without_classes() -> None:
    data = read_npz(_npz(x=FEATURES.astype(np.int16), y=np.array([True, False] * 3)), name="dense")

    assert data.info.num_classes == 2
    assert data.info.classes is None
    assert data.y is not None and data.y.tolist() == [1, 0, 1, 0, 1, 0]
    assert data.x.dtype == np.float32


def test_read_npz_reads_regression_targets() -> None:
    x = np.ones((5, 3, 4, 4), dtype=np.float32)
    y = np.linspace(0, 1, 10).reshape(5, 2)

    data = read_npz(_npz(x=x, y=y), name="regression")

    assert data.info.task == "regression"
    assert data.info.sample_shape == (3, 4, 4)
    assert data.info.target_shape == (2,)
    assert data.y is not None and data.y.dtype == np.float32
    np.testing.assert_allclose(data.y, y.astype(np.float32))


def test_read_npz_reads_unlabelled() -> None:
    data = read_npz(_npz(x=FEATURES), name="plain")

    assert data.info.task == "unlabelled"
    assert data.y is None
    np.testing.assert_array_equal(data.x, FEATURES.astype(np.float32))


# ----------------------------------------------------------------------------------------------- hostile npz


def test_read_npz_refuses_object_array() -> None:
    objects = np.array([[{"a": 1}], [None]], dtype=object)
    archive = _zip({"x.npy": _npy(objects, allow_pickle=True)})

    assert "would need pickle" in _refusal(read_npz, archive, name="objects")


def test_read_npz_refuses_structured_dtype() -> None:
    records = np.zeros((4, 2), dtype=[("a", "<f4"), ("b", "<i4")])

    assert "structured dtype with fields 'a', 'b'" in _refusal(read_npz, _npz(x=records), name="records")


def test_read_npz_refuses_complex_dtype() -> None:
    message = _refusal(read_npz, _npz(x=np.ones((4, 2), dtype=np.complex64)), name="complex")

    assert "dtype complex64: only bool, integer and float" in message


def test_read_npz_refuses_huge_declared_shape_in_tiny_member() -> None:
    archive = _zip({"x.npy": _npy_header((10**9, 10**3)) + bytes(16)})

    message = _refusal(read_npz, archive, name="bomb")

    assert "declares shape (1000000000, 1000): 1,000,000,000,000 elements" in message
    assert "over the limit of 32,000,000" in message


def test_read_npz_refuses_member_declaring_oversized_unpacked_size() -> None:
    archive = _with_declared_size(_zip({"x.npy": _npy(FEATURES)}), 0xFFFF_FF00)

    message = _refusal(read_npz, archive, name="zip-bomb")

    assert "member 'x.npy' unpacks to 4,294,967,040 bytes, over the cap of 256,004,096" in message


def test_read_npz_refuses_header_disagreeing_with_member_size() -> None:
    archive = _zip({"x.npy": _npy_header((4, 3)) + bytes(20)})

    message = _refusal(read_npz, archive, name="liar")

    assert "48 bytes of data, but its member holds 20 bytes" in message


def test_read_npz_refuses_npy_format_version_3() -> None:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, FEATURES, version=(3, 0))

    message = _refusal(read_npz, _zip({"x.npy": buffer.getvalue()}), name="v3")

    assert "format version 3.0" in message


def test_read_npz_refuses_nan_in_x() -> None:
    x = FEATURES.copy()
    x[1, 0] = np.nan
    x[2, 1] = np.inf
    x[4, 0] = 1e300  # finite in float64, infinite in float32

    message = _refusal(read_npz, _npz(x=x), name="nan")

    assert "x holds 3 non-finite values" in message
    assert "the first at index (1, 0)" in message


def test_read_npz_refuses_nan_in_regression_targets() -> None:
    message = _refusal(read_npz, _npz(x=FEATURES, y=np.array([0.0, 1.0, np.nan, 2.0, 3.0, 4.0])), name="n")

    assert "y holds 1 non-finite targets" in message


def test_read_npz_refuses_mismatched_y_length() -> None:
    message = _refusal(read_npz, _npz(x=FEATURES, y=np.arange(5)), name="short")

    assert "y has 5 rows but x has 6 samples" in message


def test_read_npz_refuses_one_hot_int_labels() -> None:
    message = _refusal(read_npz, _npz(x=FEATURES, y=np.eye(6, dtype=np.int64)), name="one-hot")

    assert "1-D integer array (not one-hot)" in message


def test_read_npz_refuses_single_class() -> None:
    message = _refusal(read_npz, _npz(x=FEATURES, y=np.full(6, 4)), name="one")

    assert "single class (4)" in message


def test_read_npz_refuses_too_many_classes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_CLASSES", 5)

    message = _refusal(read_npz, _npz(x=FEATURES, y=np.arange(6)), name="many")

    assert "6 distinct labels, over the limit of 5 classes" in message


@pytest.mark.parametrize("label", [2**53, -(2**53), 2**64 - 1])
def test_read_npz_refuses_integer_labels_beyond_what_json_clients_read_exactly(label: int) -> None:
    dtype = np.uint64 if label > 0 else np.int64
    y = np.array([0, 1, label, 0, 1, label], dtype=dtype)

    message = _refusal(read_npz, _npz(x=FEATURES, y=y), name="ids")

    assert f"y holds the label {label}, beyond ±9,007,199,254,740,991" in message
    assert "renumber the classes" in message


def test_read_npz_keeps_integer_labels_at_the_json_bound_exactly() -> None:
    bound = limits.MAX_INTEGER_LABEL
    data = read_npz(_npz(x=FEATURES, y=np.array([-bound, 0, bound] * 2, dtype=np.int64)), name="edge")

    assert data.info.classes == (-bound, 0, bound)


def test_read_npz_refuses_extra_members() -> None:
    archive = _npz(x=FEATURES, y=np.arange(6) % 2, z=FEATURES)

    assert "unexpected members 'z.npy'" in _refusal(read_npz, archive, name="extra")


def test_read_npz_refuses_missing_x() -> None:
    assert "has no x.npy member" in _refusal(read_npz, _npz(y=np.arange(6)), name="no-x")


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((6,), "rank 2 to 4"),
        ((6, 1, 2, 2, 2), "rank 2 to 4"),
        ((6, 0), "every axis needs at least one entry"),
        ((1, 3), "holds 1 sample(s)"),
    ],
)
def test_read_npz_refuses_bad_x_shape(shape: tuple[int, ...], expected: str) -> None:
    assert expected in _refusal(read_npz, _npz(x=np.zeros(shape)), name="shape")


def test_read_npz_refuses_too_many_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_SAMPLES", 5)

    assert "holds 6 samples, over the limit of 5" in _refusal(read_npz, _npz(x=FEATURES), name="big")


def test_read_npz_refuses_x_and_y_over_element_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_DATASET_ELEMENTS", 15)  # x alone (12) fits, x plus y (18) does not

    message = _refusal(read_npz, _npz(x=FEATURES, y=np.zeros(6)), name="big")

    assert "x and y together hold 18 elements, over the limit of 15" in message


def test_read_npz_refuses_non_zip_bytes() -> None:
    assert "is not a .npz (zip) archive" in _refusal(read_npz, b"x,y\n1,2\n", name="text")


def test_read_npz_refuses_oversized_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _npz(x=FEATURES)
    monkeypatch.setattr(limits, "MAX_UPLOAD_BYTES", len(archive) - 1)

    message = _refusal(read_npz, archive, name="big")

    assert f"{len(archive):,} bytes, over the limit of {len(archive) - 1:,}" in message


@pytest.mark.parametrize("compress", [False, True])
def test_read_npz_refuses_damaged_bytes_or_reads_them_as_the_original(compress: bool) -> None:
    buffer = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buffer, x=FEATURES, y=np.arange(6) % 2)
    archive = buffer.getvalue()
    original = read_npz(archive, name="damaged")
    cuts = [archive[:cut] for cut in range(len(archive))]
    flips = [archive[:at] + bytes([archive[at] ^ 0xFF]) + archive[at + 1 :] for at in range(len(archive))]

    for data in cuts:
        with pytest.raises(SpecError):
            read_npz(data, name="damaged")
    for data in flips:
        try:
            read = read_npz(data, name="damaged")
        except SpecError:
            continue
        # A flip in a field nobody reads (a timestamp) leaves a valid archive: it must read as the original.
        assert read.info == original.info
        assert read.x.dtype == original.x.dtype and np.array_equal(read.x, original.x)
        assert read.y is not None and original.y is not None
        assert read.y.dtype == original.y.dtype and np.array_equal(read.y, original.y)


# ----------------------------------------------------------------------------------------------- valid csv


def test_read_csv_reads_int_labels_from_any_column() -> None:
    text = b"a,label,b\n1,5,2\n3,7,4\n5,5,6\n"

    data = read_csv(text, name="ints", label_column="label")

    assert data.info.task == "classification"
    assert data.info.classes == (5, 7)
    assert data.y is not None and data.y.tolist() == [0, 1, 0]
    assert data.x.dtype == np.float32
    assert data.x.tolist() == [[1, 2], [3, 4], [5, 6]]
    assert data.info.sample_shape == (2,)


def test_read_csv_reads_float_targets() -> None:
    data = read_csv(b"a,b,price\n1,2,0.5\n3,4,2\n5,6,-1.25\n", name="floats", label_column="price")

    assert data.info.task == "regression"
    assert data.info.target_shape == ()
    assert data.y is not None and data.y.dtype == np.float32
    assert data.y.tolist() == [0.5, 2.0, -1.25]


def test_read_csv_refuses_integer_labels_beyond_what_json_clients_read_exactly() -> None:
    text = b"a,id\n1,9007199254740991\n2,3\n3,9007199254740993\n"

    message = _refusal(read_csv, text, name="ids", label_column="id")

    assert "column 'id', line 4: the label 9007199254740993 is beyond ±9,007,199,254,740,991" in message
    assert "make the labels text (e.g. id9007199254740993)" in message
    as_text = read_csv(text.replace(b",9", b",id9"), name="ids", label_column="id")
    assert as_text.info.classes == ("3", "id9007199254740991", "id9007199254740993")


def test_read_csv_reads_string_labels() -> None:
    data = read_csv(b"w,kind\n1,dog\n2,cat\n3,dog\n4,emu\n", name="strings", label_column="kind")

    assert data.info.task == "classification"
    assert data.info.classes == ("cat", "dog", "emu")
    assert data.y is not None and data.y.tolist() == [1, 0, 1, 2]


def test_read_csv_reads_unlabelled() -> None:
    data = read_csv(b"a,b,c\n1,2,3\n4,5,6\n", name="plain", label_column=None)

    assert data.info.task == "unlabelled"
    assert data.y is None
    assert data.x.shape == (2, 3)


def test_read_csv_tolerates_bom_crlf_and_blank_lines() -> None:
    data = read_csv("\ufeffa,y\r\n1,0\r\n\r\n2,1\r\n\r\n".encode(), name="windows", label_column="a")

    assert data.info.num_samples == 2
    assert data.info.classes == (1, 2)


# ----------------------------------------------------------------------------------------------- hostile csv


def test_read_csv_refuses_ragged_row() -> None:
    message = _refusal(read_csv, b"a,b\n1,2\n3,4\n5\n7,8\n", name="ragged", label_column=None)

    assert "line 4 has 1 fields but the header has 2" in message


def test_read_csv_refuses_non_numeric_feature() -> None:
    text = b"a,b,label\n1,2,0\n3,x,1\n"

    message = _refusal(read_csv, text, name="text", label_column="label")

    assert "column 'b', line 3: 'x' is not a number" in message


def test_read_csv_refuses_non_finite_feature() -> None:
    message = _refusal(read_csv, b"a,b\n1,2\n3,inf\n1e300,4\n", name="inf", label_column=None)

    assert "column 'b', line 3: inf is not a finite float32 number (2 such values in all)" in message


def test_read_csv_refuses_unknown_label_column() -> None:
    message = _refusal(read_csv, b"a,b\n1,2\n3,4\n", name="labels", label_column="target")

    assert "label column 'target' is not in the header; the columns are 'a', 'b'" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [(b"", "the file is empty"), (b"\n\n", "the file is empty"), (b"a,b\n", "holds 0 sample(s)")],
)
def test_read_csv_refuses_empty(text: bytes, expected: str) -> None:
    assert expected in _refusal(read_csv, text, name="empty", label_column=None)


def test_read_csv_refuses_invalid_utf8() -> None:
    message = _refusal(read_csv, b"a,b\n1,\xff\n", name="latin", label_column=None)

    assert "not valid UTF-8 (byte 0xff at offset 6" in message


def test_read_csv_refuses_unnamed_and_duplicate_columns() -> None:
    assert "header column 3 has no name" in _refusal(read_csv, b"a,b,\n1,2,\n", name="c", label_column=None)
    assert "names 'a' more than once" in _refusal(read_csv, b"a,a\n1,2\n", name="c", label_column=None)


def test_read_csv_refuses_single_class_and_empty_label() -> None:
    one = _refusal(read_csv, b"a,y\n1,3\n2,3\n", name="one", label_column="y")
    empty = _refusal(read_csv, b"a,y\n1,3\n2,\n", name="gap", label_column="y")

    assert "column 'y' holds a single class (3)" in one
    assert "column 'y', line 3: the label is empty" in empty


def test_read_csv_refuses_too_many_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_CSV_COLUMNS", 2)

    message = _refusal(read_csv, b"a,b,c\n1,2,3\n4,5,6\n", name="wide", label_column=None)

    assert "3 columns, over the limit of 2" in message


def test_read_csv_refuses_too_many_cells_while_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_DATASET_ELEMENTS", 5)
    rows = b"".join(b"1,2\n" for _ in range(100))

    message = _refusal(read_csv, b"a,b\n" + rows, name="long", label_column=None)

    assert "more than 5 cells (rows × columns) by line 4" in message  # the third row, not the end of file


def test_read_csv_refuses_too_many_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_SAMPLES", 2)

    message = _refusal(read_csv, b"a\n1\n2\n3\n", name="long", label_column=None)

    assert "more than 2 data rows" in message


# ----------------------------------------------------------------------------------------------- files


def test_read_dataset_file_reads_paths_by_suffix(tmp_path: Path) -> None:
    (tmp_path / "d.NPZ").write_bytes(_npz(x=FEATURES))
    (tmp_path / "d.csv").write_bytes(b"a,y\n1,0\n2,1\n")

    assert read_dataset_file(tmp_path / "d.NPZ", name="n").info.task == "unlabelled"
    assert read_dataset_file(str(tmp_path / "d.csv"), name="c", label_column="y").info.num_classes == 2


def test_read_dataset_file_reads_bytes_with_format() -> None:
    assert read_dataset_file(b"a,b\n1,2\n3,4\n", name="b", file_format="csv").info.num_samples == 2


def test_read_dataset_file_refuses_bytes_without_format() -> None:
    assert "file_format ('npz' or 'csv') is required" in _refusal(read_dataset_file, b"a\n1\n2\n", name="b")


def test_read_dataset_file_refuses_unknown_suffix(tmp_path: Path) -> None:
    path = tmp_path / "d.txt"
    path.write_bytes(b"a\n1\n2\n")

    assert "suffix '.txt'" in _refusal(read_dataset_file, path, name="t")


def test_read_dataset_file_refuses_label_column_for_npz() -> None:
    message = _refusal(read_dataset_file, _npz(x=FEATURES), name="n", file_format="npz", label_column="y")

    assert "label_column applies to CSV files only" in message


def test_read_dataset_file_refuses_oversized_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.csv"
    path.write_bytes(b"a\n" + b"1\n" * 500)
    monkeypatch.setattr(limits, "MAX_UPLOAD_BYTES", 10)

    message = _refusal(read_dataset_file, path, name="big")

    # The file's full size shows the refusal came from stat, before a capped read of 11 bytes.
    assert "the upload is 1,002 bytes, over the limit of 10" in message


def test_read_dataset_file_refuses_missing_and_non_regular_paths(tmp_path: Path) -> None:
    assert "cannot read the file" in _refusal(read_dataset_file, tmp_path / "gone.csv", name="m")
    assert "is not a regular file" in _refusal(read_dataset_file, tmp_path, name="d", file_format="csv")


def test_uploads_module_does_not_import_torch() -> None:
    check = "import models.uploads, sys; assert 'torch' not in sys.modules"

    result = subprocess.run([sys.executable, "-c", check], cwd=REPO_ROOT, capture_output=True, text=True)

    assert result.returncode == 0, result.stderr
