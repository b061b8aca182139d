"""Reads an uploaded dataset (.npz or .csv) into a RawDataset, refusing anything unsafe or malformed.

numpy only: the web API imports this to validate uploads, so it must not pull in torch. Every check that
bounds memory runs before the allocation it guards: zip member sizes and .npy headers are read before any
array data, and CSV rows and cells are counted while reading. Every problem raises `SpecError`, never a
parser's own error.
"""

from __future__ import annotations  # array.array[...] in signatures is subscriptable only from 3.12

import array
import csv
import io
import lzma
import os
import stat
import tokenize
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from math import prod
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

import numpy as np

from models import limits
from models.dataset_info import DatasetInfo, Task
from models.errors import SpecError
from models.raw_dataset import RawDataset

if TYPE_CHECKING:
    from _csv import Reader as CsvReader

FileFormat = Literal["npz", "csv"]
Label = TypeVar("Label", int, str)
Parsed = TypeVar("Parsed")

# Room for the .npy header on top of the data (numpy's own headers are a multiple of 64 bytes, usually 128).
_NPY_HEADER_ALLOWANCE = 4096
_LARGEST_ITEMSIZE = 8  # float64 / int64: wider dtypes (float128) must fit the same byte budget
_NUMERIC_KINDS = frozenset("biuf")  # bool, int, uint, float
_NPZ_MEMBERS = ("x.npy", "y.npy")
_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}
# What zipfile, the decompressors and numpy's header parser raise on hostile or damaged bytes. SpecError is a
# ValueError, so code catching these must let it through (see `_npz_error`).
_READ_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    OSError,
    RuntimeError,  # encrypted member; NotImplementedError (unknown compression) and RecursionError too
    zlib.error,
    lzma.LZMAError,
    ValueError,
    TypeError,
    KeyError,
    SyntaxError,
    OverflowError,
    tokenize.TokenError,  # numpy re-tokenizes headers it cannot parse, in case Python 2 wrote them
)
TARGET_LIKE_COLUMNS = ("label", "target", "class", "y")  # compared lower-cased
_LISTED_NAMES = 20  # how many column or member names an error message lists before "… and N more"


def read_dataset_file(
    source: bytes | str | os.PathLike[str],
    *,
    name: str,
    file_format: FileFormat | None = None,
    label_column: str | None = None,
    unlabelled: bool = False,
) -> RawDataset:
    """Reads an upload given as bytes (`file_format` required) or as a path (format from its suffix). A CSV
    without `label_column` must say `unlabelled` when a column's name makes it look like the target."""
    if isinstance(source, bytes):
        if file_format is None:
            raise _invalid(name, "the upload is given as bytes, so file_format ('npz' or 'csv') is required")
        data = source
    else:
        path = Path(source)
        file_format = file_format or _format_from_suffix(path)
        data = _read_capped(path)
    if file_format == "npz":
        if label_column is not None:
            raise _invalid(name, "label_column applies to CSV files only: a .npz carries its labels as y.npy")
        return read_npz(data, name=name)
    if file_format == "csv":
        return read_csv(data, name=name, label_column=label_column, unlabelled=unlabelled)
    raise _invalid(name, f"unknown file_format {file_format!r}: use 'npz' or 'csv'")


def _format_from_suffix(path: Path) -> FileFormat:
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return "npz"
    if suffix == ".csv":
        return "csv"
    raise _invalid(
        str(path), f"cannot tell the format from the suffix {suffix!r}: upload a .npz or .csv file"
    )


def _read_capped(path: Path) -> bytes:
    # stat first so an oversized file is refused without reading it; the capped read then covers a file
    # that grew in between.
    try:
        status = os.stat(path)
        if not stat.S_ISREG(status.st_mode):
            raise _invalid(str(path), "is not a regular file")  # a FIFO or device could block or never end
        _check_upload_size(status.st_size, str(path))
        with open(path, "rb") as file:
            data = file.read(limits.MAX_UPLOAD_BYTES + 1)
    except OSError as error:
        raise _invalid(str(path), f"cannot read the file: {error.strerror or error}") from error
    _check_upload_size(len(data), str(path))
    return data


def _check_upload_size(size: int, value: str) -> None:
    if size > limits.MAX_UPLOAD_BYTES:
        raise _invalid(value, f"the upload is {size:,} bytes, over the limit of {limits.MAX_UPLOAD_BYTES:,}")


def _invalid(value: object, reason: str) -> SpecError:
    return SpecError.single("dataset", value, reason)


def _quoted(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_LISTED_NAMES])
    hidden = len(names) - _LISTED_NAMES
    return f"{shown} … and {hidden:,} more" if hidden > 0 else shown


def _first_line(error: BaseException) -> str:
    # numpy's header errors run over several lines of advice meant for trusted files.
    return str(error).splitlines()[0] if str(error) else type(error).__name__


# ----------------------------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class _Targets:
    y: np.ndarray | None
    task: Task
    target_shape: tuple[int, ...] = ()
    num_classes: int | None = None
    classes: tuple[int | str, ...] | None = None


def _finite_float32(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A C-contiguous float32 copy, and the flat indices of its NaN/±inf entries (overflow included)."""
    with np.errstate(over="ignore", invalid="ignore"):
        as32 = np.ascontiguousarray(values, dtype=np.float32)
    return as32, np.flatnonzero(~np.isfinite(as32))


# Class labels come back in JSON (the dataset's `classes`, a checkpoint's dataset_info): an integer beyond
# JavaScript's Number.MAX_SAFE_INTEGER would read as a neighbouring number in a browser, so it is refused.
_BEYOND_JSON_INTEGERS = (
    f"beyond ±{limits.MAX_INTEGER_LABEL:,}, the largest integer JSON clients such as JavaScript read exactly"
)


def _check_class_count(classes: Sequence[int | str], where: str, name: str, hint: str) -> None:
    if len(classes) < 2:
        raise _invalid(
            name, f"{where} holds a single class ({classes[0]!r}): classification needs at least 2"
        )
    if len(classes) > limits.MAX_CLASSES:
        raise _invalid(
            name,
            f"{where} holds {len(classes):,} distinct labels, over the limit of {limits.MAX_CLASSES:,} "
            f"classes: {hint}",
        )


def _class_targets(indices: np.ndarray, classes: Sequence[int | str]) -> _Targets:
    # Labels that already are 0..C-1 need no mapping back; any other labels are kept to report predictions.
    original = None if list(classes) == list(range(len(classes))) else tuple(classes)
    return _Targets(indices.astype(np.int64), "classification", (), len(classes), original)


def _dataset(
    name: str, x: np.ndarray, targets: _Targets, *, feature_names: tuple[str, ...] | None = None
) -> RawDataset:
    info = DatasetInfo(
        name=name,
        task=targets.task,
        num_samples=x.shape[0],
        sample_shape=tuple(x.shape[1:]),
        target_shape=targets.target_shape,
        num_classes=targets.num_classes,
        classes=targets.classes,
        feature_names=feature_names,
    )
    return RawDataset(info=info, x=x, y=targets.y)


def _check_sample_count(count: int, where: str, name: str) -> None:
    if count < 2:
        raise _invalid(name, f"{where} holds {count} sample(s): a dataset needs at least 2")
    if count > limits.MAX_SAMPLES:
        raise _invalid(name, f"{where} holds {count:,} samples, over the limit of {limits.MAX_SAMPLES:,}")


# ----------------------------------------------------------------------------------------------- npz


@dataclass(frozen=True)
class _NpyHeader:
    key: str  # "x" or "y"
    shape: tuple[int, ...]
    dtype: np.dtype
    data_bytes: int  # what the member holds after its header

    @property
    def elements(self) -> int:
        return prod(self.shape)


def read_npz(data: bytes, *, name: str) -> RawDataset:
    """x.npy (N, *sample_shape) of bools, ints or floats; optionally y.npy of int labels or float targets."""
    _check_upload_size(len(data), name)
    with _open_zip(data, name) as archive:
        members = _npz_members(archive, name)
        headers = {key: _read_npy_header(archive, info, name) for key, info in members.items()}
        _check_npz_headers(headers, name)
        arrays = {key: _load_member(archive, info, name) for key, info in members.items()}
    x, bad = _finite_float32(arrays["x"])
    if bad.size:
        first = tuple(int(i) for i in np.unravel_index(bad[0], x.shape))
        raise _invalid(
            name,
            f"x holds {bad.size:,} non-finite values (NaN, ±inf, or beyond float32's range), the first at "
            f"index {first}: clean or drop them before uploading",
        )
    return _dataset(name, x, _npz_targets(arrays.get("y"), name))


def _open_zip(data: bytes, name: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except _READ_ERRORS as error:
        raise _npz_error(name, "is not a .npz (zip) archive", error) from error


def _npz_error(name: str, what: str, error: Exception) -> SpecError:
    # Our own refusals are ValueErrors too: pass them through rather than wrap them.
    return error if isinstance(error, SpecError) else _invalid(name, f"{what}: {_first_line(error)}")


def _npz_members(archive: zipfile.ZipFile, name: str) -> dict[str, zipfile.ZipInfo]:
    names = [info.filename for info in archive.infolist()]
    unexpected = [n for n in names if n not in _NPZ_MEMBERS]
    if unexpected:
        raise _invalid(
            name,
            f"unexpected members {_quoted(unexpected)}: a .npz upload holds x.npy and optionally y.npy only",
        )
    # np.savez writes no comments; a damaged comment length swallows the members after it (y.npy, unseen)
    commented = [info.filename for info in archive.infolist() if info.comment]
    if commented:
        raise _invalid(
            name, f"members {_quoted(commented)} carry comments: the archive is damaged, save it again"
        )
    duplicated = sorted(n for n, count in Counter(names).items() if count > 1)
    if duplicated:
        raise _invalid(
            name, f"members {_quoted(duplicated)} appear more than once: which one to read is unclear"
        )
    if "x.npy" not in names:
        raise _invalid(name, "has no x.npy member: save it with np.savez(file, x=features, y=labels)")
    return {info.filename.removesuffix(".npy"): info for info in archive.infolist()}


def _read_npy_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> _NpyHeader:
    # The zip's declared size bounds how much decompressing the member could produce, so check it first.
    cap = limits.MAX_DATASET_ELEMENTS * _LARGEST_ITEMSIZE + _NPY_HEADER_ALLOWANCE
    if info.file_size > cap:
        raise _invalid(
            name,
            f"member {info.filename!r} unpacks to {info.file_size:,} bytes, over the cap of {cap:,} "
            f"({limits.MAX_DATASET_ELEMENTS:,} elements of {_LARGEST_ITEMSIZE} bytes plus a header)",
        )
    try:
        with archive.open(info) as stream:
            version = np.lib.format.read_magic(stream)
            reader = _HEADER_READERS.get(version)
            if reader is None:
                raise _invalid(
                    name,
                    f"member {info.filename!r} is .npy format version {version[0]}.{version[1]}: "
                    "only 1.0 and 2.0 are accepted",
                )
            shape, _fortran_order, dtype = reader(stream)
            header_bytes = stream.tell()
    except _READ_ERRORS as error:
        raise _npz_error(name, f"member {info.filename!r} is damaged or not a .npy file", error) from error
    return _NpyHeader(info.filename.removesuffix(".npy"), tuple(shape), dtype, info.file_size - header_bytes)


def _check_npz_headers(headers: dict[str, _NpyHeader], name: str) -> None:
    for header in headers.values():
        _check_dtype(header, name)
        _check_shape(header, name)
    x = headers["x"]
    _check_sample_count(x.shape[0], f"array 'x' (shape {x.shape})", name)
    if "y" in headers:
        _check_y_header(x, headers["y"], name)
    # Last, so a header claiming a huge shape is reported against the limits, not as a mere size mismatch.
    for header in headers.values():
        _check_data_size(header, name)


def _check_y_header(x: _NpyHeader, y: _NpyHeader, name: str) -> None:
    if y.shape[0] != x.shape[0]:
        raise _invalid(name, f"y has {y.shape[0]:,} rows but x has {x.shape[0]:,} samples: they must match")
    if y.dtype.kind != "f" and len(y.shape) > 1:
        raise _invalid(
            name,
            f"y is {y.dtype} of shape {y.shape}: give class labels as a 1-D integer array (not one-hot), "
            "or regression targets as floats",
        )
    if x.elements + y.elements > limits.MAX_DATASET_ELEMENTS:
        raise _invalid(
            name,
            f"x and y together hold {x.elements + y.elements:,} elements, over the limit of "
            f"{limits.MAX_DATASET_ELEMENTS:,}",
        )


def _check_dtype(header: _NpyHeader, name: str) -> None:
    where = f"array {header.key!r}"
    if header.dtype.hasobject:
        raise _invalid(
            name, f"{where} holds Python objects: loading it would need pickle, which uploads never allow"
        )
    if header.dtype.names is not None:
        raise _invalid(
            name,
            f"{where} has a structured dtype with fields {_quoted(header.dtype.names)}: "
            "save plain numeric arrays instead",
        )
    if header.dtype.kind not in _NUMERIC_KINDS:
        raise _invalid(
            name, f"{where} has dtype {header.dtype}: only bool, integer and float arrays are accepted"
        )


def _check_shape(header: _NpyHeader, name: str) -> None:
    where = f"array {header.key!r} declares shape {header.shape}"
    rank = len(header.shape)
    if header.key == "x" and not 2 <= rank <= 1 + limits.MAX_SAMPLE_RANK:
        raise _invalid(
            name,
            f"{where}: x needs a sample axis then 1 to {limits.MAX_SAMPLE_RANK} per-sample axes "
            f"(rank 2 to {1 + limits.MAX_SAMPLE_RANK})",
        )
    if rank == 0:
        raise _invalid(name, f"{where}: it needs one entry per sample")
    if min(header.shape) < 1:
        raise _invalid(name, f"{where}: every axis needs at least one entry")
    if header.elements > limits.MAX_DATASET_ELEMENTS:
        raise _invalid(
            name,
            f"{where}: {header.elements:,} elements, over the limit of {limits.MAX_DATASET_ELEMENTS:,}",
        )


def _check_data_size(header: _NpyHeader, name: str) -> None:
    # A header that lies about the shape would otherwise make numpy allocate for data that is not there.
    declared = header.elements * header.dtype.itemsize
    if declared != header.data_bytes:
        raise _invalid(
            name,
            f"array {header.key!r} declares shape {header.shape} of {header.dtype}, {declared:,} bytes of "
            f"data, but its member holds {header.data_bytes:,} bytes after the header: the file is truncated "
            "or its header is wrong",
        )


def _load_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> np.ndarray:
    try:
        with archive.open(info) as stream:
            return np.lib.format.read_array(stream, allow_pickle=False)
    except _READ_ERRORS as error:
        raise _npz_error(name, f"member {info.filename!r} could not be read", error) from error


def _npz_targets(y: np.ndarray | None, name: str) -> _Targets:
    if y is None:
        return _Targets(None, "unlabelled")
    if y.dtype.kind == "f":
        targets, bad = _finite_float32(y)
        if bad.size:
            raise _invalid(
                name,
                f"y holds {bad.size:,} non-finite targets (NaN, ±inf, or beyond float32's range), the first "
                f"at flat index {int(bad[0]):,}: clean or drop those samples",
            )
        return _Targets(targets, "regression", tuple(targets.shape[1:]))
    classes, indices = np.unique(y, return_inverse=True)
    labels = [int(c) for c in classes.tolist()]
    _check_class_count(labels, "y", name, "for regression targets, save y as a float array")
    beyond = [label for label in (labels[0], labels[-1]) if abs(label) > limits.MAX_INTEGER_LABEL]
    if beyond:
        raise _invalid(
            name,
            f"y holds the label {beyond[0]}, {_BEYOND_JSON_INTEGERS}: renumber the classes 0…K-1 "
            "(np.unique(y, return_inverse=True)[1])",
        )
    return _class_targets(indices.reshape(-1), labels)


# ----------------------------------------------------------------------------------------------- csv


@dataclass(frozen=True)
class _CsvColumns:
    names: list[str]
    label: int | None  # index of the label column

    @property
    def features(self) -> list[str]:
        return [n for i, n in enumerate(self.names) if i != self.label]


def read_csv(data: bytes, *, name: str, label_column: str | None, unlabelled: bool = False) -> RawDataset:
    """A header row, then one sample per row: float features and, in `label_column`, labels or targets."""
    _check_upload_size(len(data), name)
    _check_utf8(data, name)
    # A stream decodes as the reader goes; a str of the whole file (and a StringIO of it) would cost more.
    reader = csv.reader(io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline=""))
    try:
        columns = _csv_columns(reader, label_column, name)
        if columns.label is None and not unlabelled:
            _refuse_a_target_among_features(columns.names)
        features, labels, lines = _csv_rows(reader, columns, name)
    except csv.Error as error:
        raise _invalid(name, f"line {reader.line_num}: {error}") from error
    x = _csv_features(features, columns, lines, name)
    targets = (
        _Targets(None, "unlabelled")
        if columns.label is None
        else _csv_targets(labels, columns.names[columns.label], lines, name)
    )
    return _dataset(name, x, targets, feature_names=tuple(columns.features))


def _refuse_a_target_among_features(header: list[str]) -> None:
    """A column named like a target, with no label_column, is far more often a forgotten label_column than
    a feature: ask instead of silently training an unlabelled model on it."""
    named = next((n for n in header if n.strip().lower() in TARGET_LIKE_COLUMNS), None)
    if named is not None:
        raise SpecError.single(
            "label_column",
            None,
            f"the header has a column named {named!r}, which looks like the target: set "
            f"label_column={named!r} to learn it, or unlabelled=true to keep every column as a feature",
        )


def _check_utf8(data: bytes, name: str) -> None:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _invalid(
            name,
            f"is not valid UTF-8 (byte {data[error.start]:#04x} at offset {error.start:,}): save it as UTF-8",
        ) from error


def _nonblank_rows(reader: Iterator[list[str]]) -> Iterator[list[str]]:
    # Blank lines (often a trailing one) hold no sample; csv yields them as empty rows.
    return (row for row in reader if row)


def _csv_columns(reader: Iterator[list[str]], label_column: str | None, name: str) -> _CsvColumns:
    header = next(_nonblank_rows(reader), None)
    if header is None:
        raise _invalid(name, "the file is empty: a CSV upload needs a header row, then one row per sample")
    if len(header) > limits.MAX_CSV_COLUMNS:
        raise _invalid(
            name, f"the header has {len(header):,} columns, over the limit of {limits.MAX_CSV_COLUMNS:,}"
        )
    unnamed = [i + 1 for i, n in enumerate(header) if not n.strip()]
    if unnamed:
        raise _invalid(
            name, f"header column {unnamed[0]} has no name (a trailing comma adds an empty column)"
        )
    duplicated = sorted(n for n, count in Counter(header).items() if count > 1)
    if duplicated:
        raise _invalid(
            name, f"the header names {_quoted(duplicated)} more than once: column names must be unique"
        )
    if label_column is None:
        return _CsvColumns(header, None)
    if label_column not in header:
        raise _invalid(
            name, f"label column {label_column!r} is not in the header; the columns are {_quoted(header)}"
        )
    if len(header) == 1:
        raise _invalid(name, f"label column {label_column!r} is the only column: there are no features")
    return _CsvColumns(header, header.index(label_column))


def _csv_rows(
    reader: CsvReader, columns: _CsvColumns, name: str
) -> tuple[array.array[float], list[str], array.array[int]]:
    """Parses every row's features as it goes, so memory holds 8 bytes per cell rather than its text."""
    width = len(columns.names)
    features: array.array[float] = array.array("d")
    labels: list[str] = []
    lines: array.array[int] = array.array("q")  # the line of each row, for messages
    for row in _nonblank_rows(reader):
        if len(row) != width:
            raise _invalid(name, f"line {reader.line_num} has {len(row)} fields but the header has {width}")
        if len(lines) == limits.MAX_SAMPLES:
            raise _invalid(name, f"the CSV has more than {limits.MAX_SAMPLES:,} data rows, the sample limit")
        if (len(lines) + 1) * width > limits.MAX_DATASET_ELEMENTS:
            raise _invalid(
                name,
                f"the CSV holds more than {limits.MAX_DATASET_ELEMENTS:,} cells (rows × columns) by line "
                f"{reader.line_num}, the dataset element limit",
            )
        if columns.label is not None:
            labels.append(row.pop(columns.label))
        _parse_features(row, features, columns, reader.line_num, name)
        lines.append(reader.line_num)
    return features, labels, lines


def _parse_features(
    cells: list[str], into: array.array[float], columns: _CsvColumns, line: int, name: str
) -> None:
    try:
        into.extend(map(float, cells))
    except ValueError:
        # extend() may have appended the cells before the bad one; the error aborts the read, so that is moot.
        bad = next(i for i, cell in enumerate(cells) if not _is_float(cell))
        reason = f"column {columns.features[bad]!r}, line {line}: {cells[bad]!r} is not a number"
        raise _invalid(name, reason) from None


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _csv_features(
    values: array.array[float], columns: _CsvColumns, lines: array.array[int], name: str
) -> np.ndarray:
    _check_sample_count(len(lines), "the CSV", name)
    width = len(columns.features)
    x, bad = _finite_float32(np.frombuffer(values, dtype=np.float64).reshape(len(lines), width))
    if bad.size:
        row, column = divmod(int(bad[0]), width)
        raise _invalid(
            name,
            f"column {columns.features[column]!r}, line {lines[row]}: {values[int(bad[0])]} is not a finite "
            f"float32 number ({bad.size:,} such values in all)",
        )
    return x


def _csv_targets(labels: list[str], column: str, lines: array.array[int], name: str) -> _Targets:
    where = f"column {column!r}"
    empty = next((i for i, label in enumerate(labels) if not label.strip()), None)
    if empty is not None:
        raise _invalid(name, f"{where}, line {lines[empty]}: the label is empty")
    integers = _parse_all(labels, int)
    if integers is not None:
        beyond = next((i for i, label in enumerate(integers) if abs(label) > limits.MAX_INTEGER_LABEL), None)
        if beyond is not None:
            raise _invalid(
                name,
                f"{where}, line {lines[beyond]}: the label {integers[beyond]} is {_BEYOND_JSON_INTEGERS}: "
                f"renumber the classes, or make the labels text (e.g. id{integers[beyond]})",
            )
        return _csv_classes(integers, where, name, "for regression targets, write them as floats (e.g. 3.0)")
    floats = _parse_all(labels, float)
    if floats is None:
        return _csv_classes(labels, where, name, "is this column really the label?")
    targets, bad = _finite_float32(np.asarray(floats, dtype=np.float64))
    if bad.size:
        first = int(bad[0])
        raise _invalid(
            name,
            f"{where}, line {lines[first]}: {floats[first]} is not a finite float32 target "
            f"({bad.size:,} such values in all)",
        )
    return _Targets(targets, "regression")


def _parse_all(texts: list[str], parse: Callable[[str], Parsed]) -> list[Parsed] | None:
    try:
        return [parse(text) for text in texts]
    except ValueError:
        return None


def _csv_classes(labels: list[Label], where: str, name: str, hint: str) -> _Targets:
    classes = sorted(set(labels))
    _check_class_count(classes, where, name, hint)
    index = {label: i for i, label in enumerate(classes)}
    return _class_targets(np.fromiter((index[label] for label in labels), np.int64, len(labels)), classes)
