"""The nets of a bmodel and their tensor shapes, read from the file's header without libbmrt.

A bmodel starts with a 64-byte header (magic 0xFF55AAEE, header size, description size, binary
size), then a flatbuffer "model description" (TPU-MLIR's bmodel.fbs: Model -> net[] -> Net ->
parameter[] (one per stage) -> NetParameter -> input_tensor[]/output_tensor[] -> Tensor ->
shape[] -> Shape -> dim[]), then the weights. Only the description is read (kilobytes), so the
geometry of a multi-gigabyte bmodel is known in milliseconds, before any weight is loaded, and
on machines without the Sophgo runtime. Every offset is bounds-checked: a damaged file gives a
ModelError, never a crash.

Field ids below are those of bmodel.fbs (TPU-MLIR), which only ever appends fields.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError

MAGIC = 0xFF55AAEE
HEADER_BYTES = 64

# Field ids in bmodel.fbs.
_MODEL_CHIP, _MODEL_NET = 3, 4
_NET_NAME, _NET_PARAMETER = 0, 3
_PARAM_INPUTS, _PARAM_OUTPUTS, _PARAM_IS_DYNAMIC = 0, 1, 5
_TENSOR_NAME, _TENSOR_DTYPE, _TENSOR_SHAPE = 0, 1, 5
_SHAPE_DIM = 0


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: int  # bm_data_type_t: 0 f32, 1 f16, 6 i32, 8? bf16 (as the runtime numbers them)
    shapes: tuple[tuple[int, ...], ...]  # one per stage for dynamic nets, else one


@dataclass(frozen=True)
class StageInfo:
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    dynamic: bool


@dataclass(frozen=True)
class NetInfo:
    name: str
    stages: tuple[StageInfo, ...]

    def input_shape(self, index: int, stage: int = 0) -> tuple[int, ...]:
        tensor = self.stages[stage].inputs[index]
        return tensor.shapes[0] if tensor.shapes else ()

    def output_shape(self, index: int, stage: int = 0) -> tuple[int, ...]:
        tensor = self.stages[stage].outputs[index]
        return tensor.shapes[0] if tensor.shapes else ()

    @property
    def input_count(self) -> int:
        return len(self.stages[0].inputs) if self.stages else 0

    @property
    def dynamic(self) -> bool:
        return any(stage.dynamic for stage in self.stages)


@dataclass(frozen=True)
class BmodelNets:
    path: Path
    chip: str
    nets: dict[str, NetInfo]


class _Reader:
    """Bounds-checked access to flatbuffer tables in one buffer."""

    def __init__(self, data: bytes, path: Path):
        self.data = data
        self.path = path

    def fail(self) -> ModelError:
        return ModelError(f"{self.path}: the bmodel is damaged (its model description does not parse)")

    def u32(self, at: int) -> int:
        if at < 0 or at + 4 > len(self.data):
            raise self.fail()
        return struct.unpack_from("<I", self.data, at)[0]

    def i32(self, at: int) -> int:
        if at < 0 or at + 4 > len(self.data):
            raise self.fail()
        return struct.unpack_from("<i", self.data, at)[0]

    def u16(self, at: int) -> int:
        if at < 0 or at + 2 > len(self.data):
            raise self.fail()
        return struct.unpack_from("<H", self.data, at)[0]

    def u64(self, at: int) -> int:
        if at < 0 or at + 8 > len(self.data):
            raise self.fail()
        return struct.unpack_from("<Q", self.data, at)[0]

    def field(self, table: int, field_id: int) -> int | None:
        """Absolute position of a table's field, or None when it is absent."""
        vtable = table - self.i32(table)
        vtable_bytes = self.u16(vtable)
        slot = 4 + 2 * field_id
        if slot + 2 > vtable_bytes:
            return None
        offset = self.u16(vtable + slot)
        return table + offset if offset else None

    def indirect(self, at: int) -> int:
        return at + self.u32(at)

    def table_field(self, table: int, field_id: int) -> int | None:
        at = self.field(table, field_id)
        return None if at is None else self.indirect(at)

    def vector(self, table: int, field_id: int) -> tuple[int, int]:
        """(start of elements, count) of a vector field; (0, 0) when absent."""
        at = self.field(table, field_id)
        if at is None:
            return 0, 0
        start = self.indirect(at)
        count = self.u32(start)
        if count > (len(self.data) - start - 4) // 4 + 1:
            raise self.fail()
        return start + 4, count

    def tables(self, table: int, field_id: int) -> list[int]:
        start, count = self.vector(table, field_id)
        return [self.indirect(start + 4 * i) for i in range(count)]

    def string(self, table: int, field_id: int) -> str:
        at = self.table_field(table, field_id)
        if at is None:
            return ""
        length = self.u32(at)
        end = at + 4 + length
        if end > len(self.data):
            raise self.fail()
        return self.data[at + 4 : end].decode("utf-8", errors="replace")

    def scalar_i32(self, table: int, field_id: int, default: int = 0) -> int:
        at = self.field(table, field_id)
        return default if at is None else self.i32(at)

    def scalar_u32(self, table: int, field_id: int, default: int = 0) -> int:
        at = self.field(table, field_id)
        return default if at is None else self.u32(at)

    def u64_vector(self, table: int, field_id: int) -> tuple[int, ...]:
        start, count = self.vector(table, field_id)
        if start + 8 * count > len(self.data):
            raise self.fail()
        return tuple(self.u64(start + 8 * i) for i in range(count))


def read_bmodel_nets(path: str | Path) -> BmodelNets:
    """Every net's name and its input/output shapes per stage. ModelError for anything that is
    not a readable bmodel."""
    path = Path(path).expanduser()
    try:
        with open(path, "rb") as file:
            header = file.read(HEADER_BYTES)
            if len(header) < HEADER_BYTES:
                raise ModelError(f"{path}: not a bmodel (file too small)")
            magic, header_size, description_size = struct.unpack_from("<III", header)
            if magic != MAGIC:
                raise ModelError(f"{path}: not a bmodel (bad magic number)")
            file.seek(header_size)
            description = file.read(description_size)
    except FileNotFoundError:
        raise ModelError(f"bmodel {path} does not exist") from None
    except IsADirectoryError:
        raise ModelError(f"bmodel {path} is a folder, not a .bmodel file") from None
    except OSError as exc:
        raise ModelError(f"cannot read the bmodel {path}: {exc.strerror or exc}") from None
    if len(description) < description_size:
        raise ModelError(f"{path}: the bmodel is truncated")
    reader = _Reader(description, path)
    root = reader.indirect(0)
    chip = reader.string(root, _MODEL_CHIP)
    nets: dict[str, NetInfo] = {}
    for net in reader.tables(root, _MODEL_NET):
        name = reader.string(net, _NET_NAME)
        stages = tuple(_stage(reader, param) for param in reader.tables(net, _NET_PARAMETER))
        nets[name] = NetInfo(name, stages)
    if not nets:
        raise reader.fail()
    return BmodelNets(path, chip, nets)


def _stage(reader: _Reader, param: int) -> StageInfo:
    def tensors(field_id: int) -> tuple[TensorInfo, ...]:
        out = []
        for tensor in reader.tables(param, field_id):
            shapes = tuple(tuple(reader.u64_vector(shape, _SHAPE_DIM)) for shape in reader.tables(tensor, _TENSOR_SHAPE))
            out.append(TensorInfo(reader.string(tensor, _TENSOR_NAME), reader.scalar_u32(tensor, _TENSOR_DTYPE), shapes))
        return tuple(out)

    return StageInfo(tensors(_PARAM_INPUTS), tensors(_PARAM_OUTPUTS), bool(reader.scalar_i32(param, _PARAM_IS_DYNAMIC)))
