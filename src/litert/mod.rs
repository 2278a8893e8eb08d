//! Running models on the official LiteRT runtime from Rust, without Python.
//!
//! The `ai-edge-litert` wheel ships `libLiteRt.so`, a self-contained library exporting the
//! LiteRT C API. This module loads it at run time with `libloading` (the crate has no
//! link-time dependency on it: everything else builds and works without it), checks which
//! release it is, and wraps the handful of C calls needed to run a model on the CPU:
//!
//! ```text
//! LiteRt::load ── find libLiteRt.so (--litert-lib, $TFLQUANT_LITERT_LIB, Python's package)
//!              ── read its version from the wheel's metadata; refuse anything but 2.3.x
//!              ── dlopen, resolve every C function used (ffi::Api), create an environment
//!              ── self test: a two-op model written by our writer must run and come back
//!                 with the tensor types, layouts and values expected (guards the ABI)
//! LiteRt::open ── LiteRtCreateModelFromFile/Buffer → LiteRtCreateCompiledModel (CPU)
//! CompiledModel::run ── dtype/shape checks → resize dynamic inputs → managed tensor
//!                       buffers → LiteRtRunCompiledModel → copy outputs into Arrays
//! ```
//!
//! Models run through the signature that covers subgraph 0 (LiteRT makes a placeholder
//! signature for models without one); inputs and outputs are nevertheless given and
//! returned in the order of subgraph 0's inputs and outputs, matched by tensor index.
//!
//! Kernels: by default LiteRT's CPU accelerator hands the graph to XNNPACK, as the Python
//! `Interpreter` does by default, and the outputs are bit-identical to Python's;
//! [`CpuKernels::Builtin`] asks for TFLite's builtin kernels instead (what
//! `testdata/*.expected.npz` were made with, reproduced bit for bit). The two kernel sets
//! differ in the last bits of float results, and more on dynamic-range models. XNNPACK runs
//! with subgraph reshaping off, and a graph with value-dependent shapes runs on the builtin
//! kernels (see [`CompiledModel::kernels`] and `compiled/compile.rs`: with reshaping on, LiteRT 2.3
//! lets XNNPACK write past an output buffer).
//!
//! Not supported by the 2.3 C API (the Python `Interpreter` runs them): models with
//! variable tensors, variant tensors or operator intermediates (the model loader refuses
//! them; the error names what the model has), and outputs whose shape depends on input
//! values (TFLite refuses to bind caller memory to such dynamic tensors).
//!
//! Errors: every failing C call becomes an [`Error`] naming the function, the status and,
//! when the runtime collected any, its own messages (compiled models are created with
//! LiteRT's buffer error reporter so those can be fetched). A missing or unsupported library
//! is [`Error::Usage`] (exit code 2) and says how to install the right one.
//!
//! Resources: the library, once loaded, stays loaded for the life of the process (LiteRT
//! is not written to be unloaded); environments, models, options, compiled models and
//! tensor buffers are released on drop, in dependency order. The handles are not `Send`:
//! LiteRT does not promise its environment is thread-safe, so each thread loads its own.

// Files: `locate` (lookup, version), `ffi` (the C declarations, `call!` naming the C
// function in every status), `compiled/` (a compiled model: its handles, compilation,
// signature, runs, buffers, diagnostics), `buffer` (tensor buffers), `convert` (Arrays
// <-> bytes), `intermediates` (extra outputs, the self-test model), `calibrate` (ranges
// on LiteRT).
mod buffer;
mod calibrate;
mod compiled;
mod convert;
mod ffi;
mod intermediates;
mod locate;

use std::ffi::{CString, c_int};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Mutex;

use buffer::AlignedBytes;
pub use calibrate::calibration_tensors;
pub use compiled::CompiledModel;
use compiled::ModelSource;
pub use convert::ElementType;
pub use intermediates::{TensorRun, with_extra_outputs};
pub use locate::{
    ENV_LIB, ENV_PYTHON, Origin, RECOMMENDED_VERSION, SUPPORTED, Version, install_hint,
};

use crate::data::Array;
use crate::error::{Error, Result};

/// How much of LiteRT's own log reaches stderr. The setting is global to the loaded
/// library (the last [`LiteRt::load`] wins).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RuntimeLog {
    /// Nothing (errors come back as [`Error`]s with the runtime's messages).
    #[default]
    Silent,
    Errors,
    Warnings,
    Info,
    Verbose,
}

impl RuntimeLog {
    /// `LiteRtLogSeverity` below which messages are dropped.
    fn severity(self) -> i64 {
        match self {
            RuntimeLog::Verbose => 0,
            RuntimeLog::Info => 1,
            RuntimeLog::Warnings => 2,
            RuntimeLog::Errors => 3,
            RuntimeLog::Silent => 4,
        }
    }
}

/// Where to find the library and how to set it up.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The library file (or the `ai_edge_litert` package directory holding it); the CLI's
    /// `--litert-lib`. Takes precedence over `$TFLQUANT_LITERT_LIB`.
    pub lib: Option<PathBuf>,
    /// The Python to ask for the `ai_edge_litert` package when no path is given; default
    /// `$TFLQUANT_PYTHON`, else `python3`.
    pub python: Option<PathBuf>,
    /// LiteRT's own log on stderr.
    pub log: RuntimeLog,
}

/// Which CPU kernels run the model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CpuKernels {
    /// LiteRT's default: the XNNPACK delegate takes what it supports, builtin kernels the
    /// rest. The same as the Python `Interpreter`'s default.
    #[default]
    Xnnpack,
    /// TFLite's builtin (optimized) kernels, no delegate.
    Builtin,
    /// TFLite's reference kernels, no delegate.
    Reference,
}

impl std::fmt::Display for CpuKernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CpuKernels::Xnnpack => "XNNPACK",
            CpuKernels::Builtin => "builtin",
            CpuKernels::Reference => "reference",
        })
    }
}

/// How to compile a model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenOptions {
    pub kernels: CpuKernels,
    /// CPU threads; `None` leaves LiteRT's default (1).
    pub num_threads: Option<u32>,
}

/// An input or output of a compiled model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// Index of the tensor in subgraph 0.
    pub index: usize,
    pub dtype: ElementType,
    /// Shape as the model declares it; `-1` marks a dynamic dimension.
    pub shape: Vec<i32>,
}

/// A loaded, resolved library (never unloaded).
struct Lib {
    api: ffi::Api,
    path: PathBuf,
    version: Version,
    _lib: libloading::Library,
}

/// Libraries loaded so far, by canonical path.
static LOADED: Mutex<Vec<&'static Lib>> = Mutex::new(Vec::new());

/// The library and one LiteRT environment.
struct Runtime {
    lib: &'static Lib,
    env: ffi::Environment,
    origin: Origin,
}

impl Runtime {
    fn api(&self) -> &'static ffi::Api {
        &self.lib.api
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if !self.env.is_null() {
            // SAFETY: `env` came from LiteRtCreateEnvironment and is destroyed once; every
            // compiled model holds an `Rc<Runtime>`, so none outlives it.
            unsafe { (self.api().LiteRtDestroyEnvironment)(self.env) };
        }
    }
}

/// The LiteRT runtime: a loaded `libLiteRt.so` and an environment to compile models in.
/// Cloning shares the environment.
#[derive(Clone)]
pub struct LiteRt {
    rt: Rc<Runtime>,
}

impl LiteRt {
    /// Finds, checks and loads the library, creates an environment and runs the self
    /// test. See the module documentation for the lookup order.
    pub fn load(opts: &LoadOptions) -> Result<LiteRt> {
        let (path, origin) = locate::find(opts.lib.as_deref(), opts.python.as_deref())?;
        let lib = load_library(&path)?;
        let env = create_environment(lib, opts.log)?;
        let lite = LiteRt {
            rt: Rc::new(Runtime { lib, env, origin }),
        };
        lite.self_test()?;
        Ok(lite)
    }

    /// The library file in use.
    pub fn library_path(&self) -> &Path {
        &self.rt.lib.path
    }

    /// The `ai-edge-litert` release the library belongs to.
    pub fn version(&self) -> &Version {
        &self.rt.lib.version
    }

    /// How the library was found.
    pub fn origin(&self) -> &Origin {
        &self.rt.origin
    }

    /// Compiles the model file at `path` for the CPU.
    pub fn open(&self, path: impl AsRef<Path>, opts: &OpenOptions) -> Result<CompiledModel> {
        let path = path.as_ref();
        std::fs::File::open(path).map_err(|e| Error::input(path, e))?;
        let c_path = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| Error::Usage(format!("{}: path contains a NUL byte", path.display())))?;
        CompiledModel::new(
            self.rt.clone(),
            path.display().to_string(),
            ModelSource::File(path.to_path_buf(), c_path),
            opts,
        )
    }

    /// Compiles a model held in memory (copied into an aligned buffer LiteRT reads from
    /// for the life of the compiled model). `name` is used in messages.
    pub fn open_bytes(
        &self,
        bytes: &[u8],
        name: &str,
        opts: &OpenOptions,
    ) -> Result<CompiledModel> {
        if bytes.is_empty() {
            return Err(Error::NotTflite(format!("{name}: empty model")));
        }
        CompiledModel::new(
            self.rt.clone(),
            name.to_string(),
            ModelSource::Bytes(AlignedBytes::new(bytes)),
            opts,
        )
    }

    /// Compiles an IR model (serialised with our writer, in memory).
    pub fn open_model(
        &self,
        model: &crate::ir::Model,
        name: &str,
        opts: &OpenOptions,
    ) -> Result<CompiledModel> {
        let bytes = crate::writer::to_bytes(model, &crate::writer::WriteOptions::default())?;
        self.open_bytes(&bytes, name, opts)
    }

    /// Runs a two-op model (ABS then CAST to int32 on a `[2,3,5]` float32 input) and
    /// checks every fact this wrapper relies on: signature and tensor lookup, the ranked
    /// tensor type and layout structs, element type codes, buffer sizes and values. A
    /// library whose ABI differs from 2.3's fails here instead of misbehaving later.
    fn self_test(&self) -> Result<()> {
        let fail = |what: String| {
            Error::Usage(format!(
                "{} (ai-edge-litert {}) failed tflquant's self test: {what}; {}",
                self.library_path().display(),
                self.version(),
                install_hint()
            ))
        };
        let model = intermediates::self_test_model();
        let mut cm = self
            .open_model(
                &model,
                "self-test model",
                &OpenOptions {
                    kernels: CpuKernels::Builtin,
                    num_threads: None,
                },
            )
            .map_err(|e| fail(e.to_string()))?;
        let want_in = TensorInfo {
            name: "x".into(),
            index: 0,
            dtype: ElementType::F32,
            shape: vec![2, 3, 5],
        };
        if cm.inputs() != [want_in.clone()] {
            return Err(fail(format!(
                "input reads back as {:?}, expected {want_in:?}",
                cm.inputs()
            )));
        }
        let outs: Vec<(ElementType, Vec<i32>)> = cm
            .outputs()
            .iter()
            .map(|t| (t.dtype, t.shape.clone()))
            .collect();
        let want_out = vec![
            (ElementType::F32, vec![2, 3, 5]),
            (ElementType::I32, vec![2, 3, 5]),
        ];
        if outs != want_out {
            return Err(fail(format!(
                "outputs read back as {outs:?}, expected {want_out:?}"
            )));
        }
        let x: Vec<f32> = (0..30).map(|i| i as f32 * 0.75 - 11.0).collect();
        let got = cm
            .run(&[Array::f32(vec![2, 3, 5], x.clone())])
            .map_err(|e| fail(e.to_string()))?;
        let want_abs: Vec<f32> = x.iter().map(|v| v.abs()).collect();
        let want_int: Vec<i32> = want_abs.iter().map(|v| *v as i32).collect();
        let ok = got.len() == 2
            && got[0] == Array::f32(vec![2, 3, 5], want_abs)
            && got[1] == Array::new(vec![2, 3, 5], crate::data::ArrayData::I32(want_int));
        if !ok {
            return Err(fail(format!("wrong results {got:?}")));
        }
        Ok(())
    }
}

/// dlopens and resolves the library once per process.
fn load_library(path: &Path) -> Result<&'static Lib> {
    let mut loaded = LOADED
        .lock()
        .map_err(|_| Error::Internal("LiteRT library registry poisoned".into()))?;
    if let Some(lib) = loaded.iter().find(|l| l.path == path) {
        return Ok(lib);
    }
    let version = locate::detect_version(path)?;
    locate::check_supported(&version, path)?;
    let bad = |what: String| {
        Error::Usage(format!(
            "cannot load the LiteRT runtime {} (ai-edge-litert {version}): {what}; {}",
            path.display(),
            install_hint()
        ))
    };
    // SAFETY: loading runs the library's initialisers. The file is the libLiteRt.so of an
    // ai-edge-litert 2.3.x wheel (checked just above against the wheel's own metadata),
    // which is meant to be loaded into any process (the wheel's Python package dlopens
    // it the same way). It is never unloaded (the handle is leaked below), so its
    // termination routines only run at process exit.
    let lib = unsafe { open_library(path) }.map_err(|e| bad(e.to_string()))?;
    // SAFETY: the version check above makes this a LiteRT 2.3 C API library, whose
    // functions have the signatures declared in `ffi`.
    let api = unsafe { ffi::Api::load(&lib) }.map_err(bad)?;
    let lib: &'static Lib = Box::leak(Box::new(Lib {
        api,
        path: path.to_path_buf(),
        version,
        _lib: lib,
    }));
    loaded.push(lib);
    Ok(lib)
}

/// `dlopen(path, RTLD_NOW | RTLD_LOCAL)`: every symbol resolved now, none exported to
/// later libraries.
///
/// # Safety
/// As [`libloading::Library::new`]: the library's initialisers run.
#[cfg(unix)]
unsafe fn open_library(path: &Path) -> std::result::Result<libloading::Library, libloading::Error> {
    use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
    // SAFETY: forwarded to the caller.
    unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }.map(Into::into)
}

/// # Safety
/// As [`libloading::Library::new`]: the library's initialisers run.
#[cfg(not(unix))]
unsafe fn open_library(path: &Path) -> std::result::Result<libloading::Library, libloading::Error> {
    // SAFETY: forwarded to the caller.
    unsafe { libloading::Library::new(path) }
}

/// An environment that registers only the CPU accelerator (no probing for GPU/NPU
/// plugins) and logs at `log`.
fn create_environment(lib: &'static Lib, log: RuntimeLog) -> Result<ffi::Environment> {
    let options = [
        ffi::EnvOption {
            tag: ffi::ENV_AUTO_REGISTER_ACCELERATORS,
            value: ffi::AnyInt {
                any_type: ffi::ANY_TYPE_INT,
                int_value: ffi::HW_ACCELERATOR_CPU as i64,
            },
        },
        ffi::EnvOption {
            tag: ffi::ENV_MIN_LOGGER_SEVERITY,
            value: ffi::AnyInt {
                any_type: ffi::ANY_TYPE_INT,
                int_value: log.severity(),
            },
        },
    ];
    let mut env: ffi::Environment = std::ptr::null_mut();
    // SAFETY: `options` is a live array of two `LiteRtEnvOption`s (layout pinned in
    // `ffi`), read during the call only; `env` is a valid out-pointer.
    let created = ffi::call!(
        lib.api,
        unsafe LiteRtCreateEnvironment(options.len() as c_int, options.as_ptr(), &mut env)
    );
    if !created.ok() || env.is_null() {
        return Err(Error::Usage(format!(
            "LiteRT runtime {}: {}; {}",
            lib.path.display(),
            created.text(),
            install_hint()
        )));
    }
    Ok(env)
}
