//! The slice of the LiteRT C API this crate calls, as a table of function pointers
//! resolved from `libLiteRt.so` at run time.
//!
//! Types and signatures follow the headers of LiteRT 2.3.0 (`litert/c/litert_*.h`) and
//! were checked against the `ai-edge-litert==2.3.0` wheel: a C probe compiled against
//! these declarations read back tensor types, layouts, signatures and buffers, and the
//! load-time self test in [`super::LiteRt::load`] repeats the layout part on every load.
//! Structs whose layout matters are pinned with `const` assertions (the sizes the
//! headers' own `static_assert`s give for 64-bit targets).
//!
//! Everything here is `unsafe` to call; the safe wrappers live in the parent module.

use std::ffi::{c_char, c_int, c_void};

/// `LiteRtStatus`: 0 is success.
pub type Status = c_int;
pub const STATUS_OK: Status = 0;

/// `LiteRtParamIndex` (`size_t`).
pub type ParamIndex = usize;

macro_rules! opaque {
    ($($name:ident),* $(,)?) => {$(
        #[repr(C)]
        pub struct $name {
            _private: [u8; 0],
        }
    )*};
}
opaque!(
    EnvironmentT,
    ModelT,
    SignatureT,
    SubgraphT,
    TensorT,
    OptionsT,
    OpaqueOptionsT,
    CompiledModelT,
    TensorBufferT,
    TensorBufferRequirementsT,
);

pub type Environment = *mut EnvironmentT;
pub type Model = *mut ModelT;
pub type Signature = *mut SignatureT;
pub type Subgraph = *mut SubgraphT;
pub type Tensor = *mut TensorT;
pub type Options = *mut OptionsT;
pub type OpaqueOptions = *mut OpaqueOptionsT;
pub type CompiledModel = *mut CompiledModelT;
pub type TensorBuffer = *mut TensorBufferT;
pub type TensorBufferRequirements = *mut TensorBufferRequirementsT;

/// `LITERT_TENSOR_MAX_RANK`.
pub const MAX_RANK: usize = 8;

/// `LiteRtLayout`: `unsigned rank : 7; unsigned has_strides : 1;` share the first 32-bit
/// unit (rank in the low 7 bits on the little-endian targets LiteRT ships for), then
/// `int32_t dimensions[8]`, `uint32_t strides[8]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    pub bits: u32,
    pub dimensions: [i32; MAX_RANK],
    pub strides: [u32; MAX_RANK],
}
const _: () = assert!(std::mem::size_of::<Layout>() == 68);
const _: () = assert!(std::mem::offset_of!(Layout, dimensions) == 4);
const _: () = assert!(std::mem::offset_of!(Layout, strides) == 36);

impl Layout {
    /// A layout without strides; `None` if the rank exceeds [`MAX_RANK`].
    pub fn new(dims: &[i32]) -> Option<Self> {
        if dims.len() > MAX_RANK {
            return None;
        }
        let mut l = Layout {
            bits: dims.len() as u32,
            ..Default::default()
        };
        l.dimensions[..dims.len()].copy_from_slice(dims);
        Some(l)
    }

    pub fn rank(&self) -> usize {
        (self.bits & 0x7f) as usize
    }

    pub fn has_strides(&self) -> bool {
        self.bits & 0x80 != 0
    }

    /// The dimensions, `None` when the rank field is out of range (garbage).
    pub fn dims(&self) -> Option<&[i32]> {
        self.dimensions.get(..self.rank())
    }
}

/// `LiteRtRankedTensorType`: element type (a C enum, `int`) then the layout.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RankedTensorType {
    pub element_type: c_int,
    pub layout: Layout,
}
const _: () = assert!(std::mem::size_of::<RankedTensorType>() == 72);
const _: () = assert!(std::mem::offset_of!(RankedTensorType, layout) == 4);

/// `LiteRtAny` restricted to the integer case: `{ LiteRtAnyType type; union { ...;
/// int64_t int_value; ... } }` (16 bytes, the union at offset 8).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct AnyInt {
    pub any_type: c_int,
    pub int_value: i64,
}
const _: () = assert!(std::mem::size_of::<AnyInt>() == 16);
pub const ANY_TYPE_INT: c_int = 2;

/// `LiteRtEnvOption`: `{ LiteRtEnvOptionTag tag; LiteRtAny value; }` (24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EnvOption {
    pub tag: c_int,
    pub value: AnyInt,
}
const _: () = assert!(std::mem::size_of::<EnvOption>() == 24);
const _: () = assert!(std::mem::offset_of!(EnvOption, value) == 8);

/// `kLiteRtEnvOptionTagAutoRegisterAccelerators`: bitmask of accelerators to register.
pub const ENV_AUTO_REGISTER_ACCELERATORS: c_int = 24;
/// `kLiteRtEnvOptionTagMinLoggerSeverity`: minimum severity of LiteRT's own log.
pub const ENV_MIN_LOGGER_SEVERITY: c_int = 25;

/// XNNPACK delegate flags: the wheel's defaults plus
/// `TFLITE_XNNPACK_DELEGATE_FLAG_DISABLE_SUBGRAPH_RESHAPING` (0x400).
///
/// The CPU options' `flags` key replaces the delegate's default flags instead of adding to
/// them, so the defaults must be restated: `TfLiteXNNPackDelegateOptionsDefault()` in the
/// 2.3.0 `libLiteRt.so` stores 3 (`QS8 | QU8`) in `flags` (read from its machine code:
/// the function zeroes the struct, writes 3 at the `flags` offset and -1 at
/// `weight_cache_file_descriptor`). With 0x403, every testdata model that XNNPACK takes
/// gives outputs bit-identical to the Python interpreter's default (XNNPACK) run; with
/// 0x400 alone the dynamic-range models differ (their QS8 path is lost).
pub const XNNPACK_FLAGS: u32 = 0x3 | 0x400;

/// `kLiteRtHwAcceleratorCpu`.
pub const HW_ACCELERATOR_CPU: c_int = 1;

/// `kLiteRtTensorBufferTypeHostMemory`.
pub const BUFFER_TYPE_HOST_MEMORY: c_int = 1;

/// `LiteRtTensorBufferLockMode`.
pub const LOCK_READ: c_int = 0;
pub const LOCK_WRITE: c_int = 1;

/// `LiteRtElementType` values (the same numbers as `TfLiteType`).
pub mod element {
    use std::ffi::c_int;
    pub const FLOAT32: c_int = 1;
    pub const INT32: c_int = 2;
    pub const UINT8: c_int = 3;
    pub const INT64: c_int = 4;
    pub const BOOL: c_int = 6;
    pub const INT16: c_int = 7;
    pub const INT8: c_int = 9;

    /// A readable name for any element type code, for messages.
    pub fn name(code: c_int) -> String {
        match code {
            0 => "none".into(),
            1 => "float32".into(),
            2 => "int32".into(),
            3 => "uint8".into(),
            4 => "int64".into(),
            5 => "string".into(),
            6 => "bool".into(),
            7 => "int16".into(),
            8 => "complex64".into(),
            9 => "int8".into(),
            10 => "float16".into(),
            11 => "float64".into(),
            12 => "complex128".into(),
            13 => "uint64".into(),
            14 => "resource".into(),
            15 => "variant".into(),
            16 => "uint32".into(),
            17 => "uint16".into(),
            18 => "int4".into(),
            19 => "bfloat16".into(),
            20 => "int2".into(),
            21 => "uint4".into(),
            22 => "float8_e4m3fn".into(),
            23 => "float8_e5m2".into(),
            other => format!("element type {other}"),
        }
    }
}

/// The name of a `LiteRtStatus` value (the library exports no `LiteRtGetStatusString`).
pub fn status_name(s: Status) -> &'static str {
    match s {
        0 => "kLiteRtStatusOk",
        1 => "kLiteRtStatusErrorInvalidArgument",
        2 => "kLiteRtStatusErrorMemoryAllocationFailure",
        3 => "kLiteRtStatusErrorRuntimeFailure",
        4 => "kLiteRtStatusErrorMissingInputTensor",
        5 => "kLiteRtStatusErrorUnsupported",
        6 => "kLiteRtStatusErrorNotFound",
        7 => "kLiteRtStatusErrorTimeoutExpired",
        8 => "kLiteRtStatusErrorWrongVersion",
        9 => "kLiteRtStatusErrorUnknown",
        10 => "kLiteRtStatusErrorAlreadyExists",
        100 => "kLiteRtStatusCancelled",
        500 => "kLiteRtStatusErrorFileIO",
        501 => "kLiteRtStatusErrorInvalidFlatbuffer",
        502 => "kLiteRtStatusErrorDynamicLoading",
        503 => "kLiteRtStatusErrorSerialization",
        504 => "kLiteRtStatusErrorCompilation",
        1000 => "kLiteRtStatusErrorIndexOOB",
        1001 => "kLiteRtStatusErrorInvalidIrType",
        1002 => "kLiteRtStatusErrorInvalidGraphInvariant",
        1003 => "kLiteRtStatusErrorGraphModification",
        4000 => "kLiteRtStatusErrorUnsupportedRuntimeVersion",
        4001 => "kLiteRtStatusErrorUnsupportedCompilerVersion",
        4002 => "kLiteRtStatusErrorIncompatibleByteCodeVersion",
        _ => "unknown LiteRtStatus",
    }
}

/// A C function's name and the status it returned: what every LiteRT error names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Called {
    pub name: &'static str,
    pub status: Status,
}

impl Called {
    /// A check of ours that refused what `name` returned (a null pointer, a size).
    pub fn refused(name: &'static str) -> Called {
        Called {
            name,
            status: STATUS_OK,
        }
    }

    pub fn ok(self) -> bool {
        self.status == STATUS_OK
    }

    /// `"LiteRtFoo failed: kLiteRtStatusErrorRuntimeFailure (3)"`.
    pub fn text(self) -> String {
        format!(
            "{} failed: {} ({})",
            self.name,
            status_name(self.status),
            self.status
        )
    }
}

/// Calls C function `$f` of the [`Api`] `$api` and returns a [`Called`] naming it, so
/// that an error names the function that was actually called. The caller writes
/// `unsafe` (`call!(api, unsafe LiteRtFoo(a, b))`) under a SAFETY comment for the call.
macro_rules! call {
    ($api:expr, unsafe $f:ident($($arg:expr),* $(,)?)) => {
        $crate::litert::ffi::Called {
            name: stringify!($f),
            // SAFETY: stated by the caller, who wrote `unsafe` in the invocation.
            status: unsafe { ($api.$f)($($arg),*) },
        }
    };
}
pub(crate) use call;

/// Destructor of an opaque-options payload (`void (*)(void*)`).
pub type PayloadDestructor = unsafe extern "C" fn(*mut c_void);

macro_rules! api {
    ($( fn $name:ident ( $($arg:ty),* $(,)? ) $(-> $ret:ty)? ; )*) => {
        /// Function pointers resolved from the library, named as the C functions.
        #[allow(non_snake_case)]
        pub struct Api {
            $( pub $name: unsafe extern "C" fn($($arg),*) $(-> $ret)?, )*
        }

        impl Api {
            /// Resolves every function; the error names the first missing symbol.
            ///
            /// # Safety
            /// The library must be a LiteRT C API library whose functions have the
            /// signatures declared here (the caller checks the version first).
            pub unsafe fn load(lib: &libloading::Library) -> Result<Api, String> {
                Ok(Api {
                    $( $name: {
                        // SAFETY: the type is the C signature of this symbol in LiteRT
                        // 2.3 (see the module header); the caller vouches for the library.
                        let sym = unsafe {
                            lib.get::<unsafe extern "C" fn($($arg),*) $(-> $ret)?>(
                                concat!(stringify!($name), "\0").as_bytes(),
                            )
                        }
                        .map_err(|e| format!("missing symbol {}: {e}", stringify!($name)))?;
                        *sym
                    }, )*
                })
            }
        }
    };
}

api! {
    fn LiteRtCreateEnvironment(c_int, *const EnvOption, *mut Environment) -> Status;
    fn LiteRtDestroyEnvironment(Environment);

    fn LiteRtCreateModelFromFile(Environment, *const c_char, *mut Model) -> Status;
    fn LiteRtCreateModelFromBuffer(Environment, *const c_void, usize, *mut Model) -> Status;
    fn LiteRtDestroyModel(Model);
    fn LiteRtGetModelSubgraph(Model, ParamIndex, *mut Subgraph) -> Status;
    fn LiteRtGetNumModelSignatures(Model, *mut ParamIndex) -> Status;
    fn LiteRtGetModelSignature(Model, ParamIndex, *mut Signature) -> Status;

    fn LiteRtGetSignatureKey(Signature, *mut *const c_char) -> Status;
    fn LiteRtGetSignatureSubgraph(Signature, *mut Subgraph) -> Status;
    fn LiteRtGetNumSignatureInputs(Signature, *mut ParamIndex) -> Status;
    fn LiteRtGetNumSignatureOutputs(Signature, *mut ParamIndex) -> Status;
    fn LiteRtGetSignatureInputTensorByIndex(Signature, ParamIndex, *mut Tensor) -> Status;
    fn LiteRtGetSignatureOutputTensorByIndex(Signature, ParamIndex, *mut Tensor) -> Status;

    fn LiteRtGetNumSubgraphInputs(Subgraph, *mut ParamIndex) -> Status;
    fn LiteRtGetNumSubgraphOutputs(Subgraph, *mut ParamIndex) -> Status;
    fn LiteRtGetSubgraphInput(Subgraph, ParamIndex, *mut Tensor) -> Status;
    fn LiteRtGetSubgraphOutput(Subgraph, ParamIndex, *mut Tensor) -> Status;

    fn LiteRtGetTensorName(Tensor, *mut *const c_char) -> Status;
    fn LiteRtGetTensorIndex(Tensor, *mut u32) -> Status;
    fn LiteRtGetRankedTensorType(Tensor, *mut RankedTensorType) -> Status;

    fn LiteRtCreateOptions(*mut Options) -> Status;
    fn LiteRtDestroyOptions(Options);
    fn LiteRtSetOptionsHardwareAccelerators(Options, c_int) -> Status;
    fn LiteRtCreateOpaqueOptions(*const c_char, *mut c_void, Option<PayloadDestructor>, *mut OpaqueOptions) -> Status;
    fn LiteRtDestroyOpaqueOptions(OpaqueOptions);
    fn LiteRtAddOpaqueOptions(Options, OpaqueOptions) -> Status;

    fn LiteRtCreateCompiledModel(Environment, Model, Options, *mut CompiledModel) -> Status;
    fn LiteRtDestroyCompiledModel(CompiledModel);
    fn LiteRtGetCompiledModelInputBufferRequirements(CompiledModel, ParamIndex, ParamIndex, *mut TensorBufferRequirements) -> Status;
    fn LiteRtGetCompiledModelOutputBufferRequirements(CompiledModel, ParamIndex, ParamIndex, *mut TensorBufferRequirements) -> Status;
    fn LiteRtGetCompiledModelInputTensorLayout(CompiledModel, ParamIndex, ParamIndex, *mut Layout) -> Status;
    fn LiteRtGetCompiledModelOutputTensorLayouts(CompiledModel, ParamIndex, usize, *mut Layout, bool) -> Status;
    fn LiteRtCompiledModelResizeInputTensor(CompiledModel, ParamIndex, ParamIndex, *const c_int, usize) -> Status;
    fn LiteRtRunCompiledModel(CompiledModel, ParamIndex, usize, *mut TensorBuffer, usize, *mut TensorBuffer) -> Status;
    fn LiteRtCompiledModelGetErrorMessages(CompiledModel, *mut *mut c_char) -> Status;
    fn LiteRtCompiledModelClearErrors(CompiledModel) -> Status;

    fn LiteRtGetTensorBufferRequirementsBufferSize(TensorBufferRequirements, *mut usize) -> Status;
    fn LiteRtCreateManagedTensorBuffer(Environment, c_int, *const RankedTensorType, usize, *mut TensorBuffer) -> Status;
    fn LiteRtCreateManagedTensorBufferFromRequirements(Environment, *const RankedTensorType, TensorBufferRequirements, *mut TensorBuffer) -> Status;
    fn LiteRtGetTensorBufferPackedSize(TensorBuffer, *mut usize) -> Status;
    fn LiteRtLockTensorBuffer(TensorBuffer, *mut *mut c_void, c_int) -> Status;
    fn LiteRtUnlockTensorBuffer(TensorBuffer) -> Status;
    fn LiteRtDestroyTensorBuffer(TensorBuffer);
}

unsafe extern "C" {
    /// The C library's `free`, for strings LiteRT allocates with `malloc` and hands
    /// over (`LiteRtCompiledModelGetErrorMessages`).
    pub fn free(ptr: *mut c_void);
}
