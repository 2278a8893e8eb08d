# Type stubs of the tflquant package (see __init__.py for the documentation).
import os
from typing import Any, Dict, Iterable, Literal, Mapping, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

__version__: str

PathLike = Union[str, "os.PathLike[str]"]
ArrayLike = npt.ArrayLike
Sample = Union[ArrayLike, Sequence[ArrayLike], Mapping[str, ArrayLike]]
Data = Union[PathLike, np.ndarray, Mapping[str, ArrayLike], Iterable[Sample]]
Mode = Literal["dynamic", "float16", "weight-int8", "weight-int4", "int8", "int16x8", "qat"]
Runtime = Literal["reference", "litert"]
Interface = Literal["float", "int8", "uint8", "int16"]

def inspect(path: PathLike) -> Dict[str, Any]: ...
def calibrate(
    model: PathLike,
    data: Data,
    *,
    observer: str = "minmax",
    samples: Optional[int] = None,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    scale: Optional[float] = None,
    offset: Optional[float] = None,
    rgb: bool = False,
    bgr: bool = False,
    threads: Optional[int] = None,
    quiet: bool = False,
    reset_state: Union[str, int] = "auto",
) -> Dict[str, Any]: ...
def quantize(
    src: PathLike,
    dst: PathLike,
    mode: Mode,
    calibration: Optional[Data] = None,
    *,
    per_tensor: bool = False,
    min_elements: Optional[int] = None,
    block_size: Optional[Literal[32, 64, 128, 256]] = None,
    ranges: Optional[PathLike] = None,
    observer: str = "minmax",
    interface: Interface = "float",
    strict: bool = False,
    allow_larger: bool = False,
    bias: Optional[Literal["int32", "int64"]] = None,
    validate: Optional[Data] = None,
    validate_runtime: Runtime = "reference",
    html: Optional[PathLike] = None,
    litert_lib: Optional[PathLike] = None,
    samples: Optional[int] = None,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    scale: Optional[float] = None,
    offset: Optional[float] = None,
    rgb: bool = False,
    bgr: bool = False,
    threads: Optional[int] = None,
    quiet: bool = False,
    reset_state: Union[str, int] = "auto",
    **options: Any,
) -> Dict[str, Any]: ...
def compare(
    float: PathLike,
    quant: PathLike,
    data: Data,
    *,
    runtime: Runtime = "reference",
    tensors: bool = False,
    sort: Literal["local", "sqnr"] = "local",
    top: Optional[int] = None,
    html: Optional[PathLike] = None,
    litert_lib: Optional[PathLike] = None,
    samples: Optional[int] = None,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    scale: Optional[float] = None,
    offset: Optional[float] = None,
    rgb: bool = False,
    bgr: bool = False,
    threads: Optional[int] = None,
    quiet: bool = False,
    reset_state: Union[str, int] = "auto",
    **options: Any,
) -> Dict[str, Any]: ...
