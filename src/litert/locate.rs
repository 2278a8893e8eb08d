//! Finding `libLiteRt.so` and telling which `ai-edge-litert` release it belongs to.
//!
//! Lookup order: an explicit path (the CLI's `--litert-lib`), then `$TFLQUANT_LITERT_LIB`,
//! then the `ai_edge_litert` package of a Python (`$TFLQUANT_PYTHON`, else `python3`).
//!
//! The library exports no version function (no `LiteRtGetVersion` in 2.3.0), so the
//! version comes from the wheel's own files beside it: the `ai_edge_litert-X.Y.Z.dist-info`
//! directory next to the package (its `METADATA` says `Version: X.Y.Z`, and its `RECORD`
//! lists `ai_edge_litert/libLiteRt.so` with its size, which must match the file, so a
//! library swapped in by hand is not taken for the release), else the package's
//! `__init__.py` (`__version__ = "X.Y.Z"`). A library with neither is refused: its ABI
//! cannot be vouched for.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

/// Environment variable naming the library file.
pub const ENV_LIB: &str = "TFLQUANT_LITERT_LIB";
/// Environment variable naming the Python to ask where `ai_edge_litert` is installed.
pub const ENV_PYTHON: &str = "TFLQUANT_PYTHON";
/// File name of the library inside the wheel.
pub const LIB_NAME: &str = "libLiteRt.so";
/// The release the tests pin; the one to install.
pub const RECOMMENDED_VERSION: &str = "2.3.0";
/// Supported releases: `major.minor` = 2.3, any patch.
pub const SUPPORTED: (u32, u32) = (2, 3);

/// How to get a working runtime, appended to every lookup error.
pub fn install_hint() -> String {
    format!(
        "install the supported runtime with `pip install ai-edge-litert=={RECOMMENDED_VERSION}` \
         (then set {ENV_PYTHON} to that Python if it is not `python3`), or pass \
         --litert-lib PATH / set {ENV_LIB} to its {LIB_NAME} \
         (inside the installed `ai_edge_litert` package)"
    )
}

/// Where the library was found, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Given by the caller (`--litert-lib`).
    Explicit,
    /// From `$TFLQUANT_LITERT_LIB`.
    EnvVar,
    /// From the `ai_edge_litert` package of this Python.
    Python(PathBuf),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Explicit => f.write_str("--litert-lib"),
            Origin::EnvVar => write!(f, "${ENV_LIB}"),
            Origin::Python(py) => write!(f, "the ai_edge_litert package of {}", py.display()),
        }
    }
}

/// A release number `major.minor.patch` (pre-release suffixes are kept as text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
    /// The version exactly as the metadata spells it.
    pub text: String,
}

impl Version {
    pub fn parse(text: &str) -> Option<Version> {
        let text = text.trim();
        let mut parts = text.splitn(3, '.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let rest = parts.next().unwrap_or("0");
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        let patch = digits.parse().ok()?;
        Some(Version {
            major,
            minor,
            patch,
            text: text.to_string(),
        })
    }

    pub fn is_supported(&self) -> bool {
        (self.major, self.minor) == SUPPORTED
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Finds the library: `explicit`, else `$TFLQUANT_LITERT_LIB`, else Python's package.
pub fn find(explicit: Option<&Path>, python: Option<&Path>) -> Result<(PathBuf, Origin)> {
    if let Some(p) = explicit {
        return Ok((check_file(p, &Origin::Explicit)?, Origin::Explicit));
    }
    if let Some(p) = std::env::var_os(ENV_LIB).filter(|v| !v.is_empty()) {
        return Ok((check_file(Path::new(&p), &Origin::EnvVar)?, Origin::EnvVar));
    }
    let py = match python {
        Some(p) => p.to_path_buf(),
        None => std::env::var_os(ENV_PYTHON)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("python3")),
    };
    let dir = ask_python(&py)?;
    let origin = Origin::Python(py);
    Ok((check_file(&dir.join(LIB_NAME), &origin)?, origin))
}

/// The file must exist; a directory is taken to mean the package directory.
fn check_file(p: &Path, origin: &Origin) -> Result<PathBuf> {
    let p = if p.is_dir() {
        p.join(LIB_NAME)
    } else {
        p.to_path_buf()
    };
    match std::fs::metadata(&p) {
        Ok(m) if m.is_file() => Ok(std::fs::canonicalize(&p).unwrap_or(p)),
        Ok(_) => Err(Error::Usage(format!(
            "LiteRT runtime library {} (from {origin}) is not a file; {}",
            p.display(),
            install_hint()
        ))),
        Err(e) => Err(Error::Usage(format!(
            "LiteRT runtime library {} (from {origin}) cannot be used: {e}; {}",
            p.display(),
            install_hint()
        ))),
    }
}

/// Asks `python` for the directory of the `ai_edge_litert` package, without importing it
/// (importing would load the library into that Python, for nothing).
fn ask_python(python: &Path) -> Result<PathBuf> {
    const SCRIPT: &str = "import importlib.util, os, sys\n\
        s = importlib.util.find_spec('ai_edge_litert')\n\
        if s is None or not s.origin: sys.exit('No module named ai_edge_litert')\n\
        print(os.path.dirname(os.path.abspath(s.origin)))";
    let out = Command::new(python).args(["-c", SCRIPT]).output();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            return Err(Error::Usage(format!(
                "cannot find the LiteRT runtime: neither --litert-lib nor {ENV_LIB} is set, \
                 and running {} (to find the ai_edge_litert package) failed: {e}; {}",
                python.display(),
                install_hint()
            )));
        }
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("").trim();
        return Err(Error::Usage(format!(
            "cannot find the LiteRT runtime: neither --litert-lib nor {ENV_LIB} is set, \
             and {} has no ai_edge_litert package ({last}); {}",
            python.display(),
            install_hint()
        )));
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if dir.is_empty() {
        return Err(Error::Usage(format!(
            "cannot find the LiteRT runtime: {} printed no ai_edge_litert location; {}",
            python.display(),
            install_hint()
        )));
    }
    Ok(PathBuf::from(dir))
}

/// The release the library at `lib` belongs to, from the wheel's files beside it.
pub fn detect_version(lib: &Path) -> Result<Version> {
    let unknown = |why: String| {
        Error::Usage(format!(
            "cannot tell which ai-edge-litert release {} belongs to ({why}); tflquant only \
             loads a {LIB_NAME} that sits in its installed `ai_edge_litert` package, whose \
             metadata says the version (supported: {}.{}.x); {}",
            lib.display(),
            SUPPORTED.0,
            SUPPORTED.1,
            install_hint()
        ))
    };
    let pkg_dir = lib
        .parent()
        .ok_or_else(|| unknown("no parent directory".into()))?;
    let pkg_name = pkg_dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| unknown("no package directory name".into()))?;
    let lib_name = lib
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| unknown("no file name".into()))?;

    let from_dist_info = pkg_dir
        .parent()
        .map(|site| version_from_dist_info(site, pkg_name, lib_name, lib))
        .transpose()?
        .flatten();
    if let Some(v) = from_dist_info {
        return Ok(v);
    }
    let init = pkg_dir.join("__init__.py");
    let from_init = std::fs::read_to_string(&init)
        .ok()
        .and_then(|text| version_from_init(&text));
    if let Some(v) = from_init {
        return Ok(v);
    }
    Err(unknown(format!(
        "no {pkg_name}-*.dist-info listing it in {}, no __version__ in {}",
        pkg_dir.parent().unwrap_or(pkg_dir).display(),
        init.display()
    )))
}

/// Looks for `<pkg>-<version>.dist-info` in `site` whose `RECORD` lists `<pkg>/<lib>`;
/// checks the recorded size against the file.
fn version_from_dist_info(
    site: &Path,
    pkg_name: &str,
    lib_name: &str,
    lib: &Path,
) -> Result<Option<Version>> {
    let Ok(entries) = std::fs::read_dir(site) else {
        return Ok(None);
    };
    let prefix = format!("{pkg_name}-");
    let record_key = format!("{pkg_name}/{lib_name},");
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".dist-info"))
        })
        .collect();
    dirs.sort();
    for d in dirs {
        let Ok(record) = std::fs::read_to_string(d.join("RECORD")) else {
            continue;
        };
        let Some(line) = record.lines().find(|l| l.starts_with(&record_key)) else {
            continue;
        };
        let Ok(metadata) = std::fs::read_to_string(d.join("METADATA")) else {
            continue;
        };
        let Some(v) = metadata
            .lines()
            .find_map(|l| l.strip_prefix("Version:"))
            .and_then(Version::parse)
        else {
            continue;
        };
        // RECORD lines are `path,sha256=...,size`.
        let recorded: Option<u64> = line.rsplit(',').next().and_then(|s| s.trim().parse().ok());
        let actual = std::fs::metadata(lib).map(|m| m.len()).ok();
        match (recorded, actual) {
            (Some(r), Some(a)) if r != a => {
                return Err(Error::Usage(format!(
                    "{} is not the library ai-edge-litert {v} installed: {} records {r} bytes, \
                 the file has {a}; reinstall the package ({})",
                    lib.display(),
                    d.join("RECORD").display(),
                    install_hint()
                )));
            }
            _ => return Ok(Some(v)),
        }
    }
    Ok(None)
}

/// `__version__ = "X.Y.Z"` in a package's `__init__.py`.
fn version_from_init(text: &str) -> Option<Version> {
    text.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("__version__")?.trim_start();
        let rest = rest.strip_prefix('=')?.trim();
        let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
        let inner = rest[1..].split(quote).next()?;
        Version::parse(inner)
    })
}

/// Refuses versions outside the supported range.
pub fn check_supported(v: &Version, lib: &Path) -> Result<()> {
    if v.is_supported() {
        return Ok(());
    }
    Err(Error::Usage(format!(
        "{} is from ai-edge-litert {v}, but tflquant supports {}.{}.x only (its C ABI \
         changes between releases); {}",
        lib.display(),
        SUPPORTED.0,
        SUPPORTED.1,
        install_hint()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        let v = Version::parse("2.3.0").unwrap();
        assert_eq!((v.major, v.minor, v.patch), (2, 3, 0));
        assert!(v.is_supported());
        let v = Version::parse("2.3.1rc1").unwrap();
        assert_eq!((v.major, v.minor, v.patch), (2, 3, 1));
        assert!(v.is_supported());
        assert!(!Version::parse("2.4.0").unwrap().is_supported());
        assert!(!Version::parse("1.3.0").unwrap().is_supported());
        assert!(Version::parse("x.y").is_none());
    }

    #[test]
    fn reads_init_version() {
        let v = version_from_init("__version__ = \"2.3.0\"\nimport os\n").unwrap();
        assert_eq!(v.text, "2.3.0");
        assert!(version_from_init("import os\n").is_none());
        assert_eq!(version_from_init("__version__='2.2.1'").unwrap().minor, 2);
    }

    #[test]
    fn dist_info_size_mismatch_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let pkg = dir.path().join("ai_edge_litert");
        std::fs::create_dir(&pkg).unwrap();
        let lib = pkg.join(LIB_NAME);
        std::fs::write(&lib, b"12345").unwrap();
        let di = dir.path().join("ai_edge_litert-2.3.0.dist-info");
        std::fs::create_dir(&di).unwrap();
        std::fs::write(
            di.join("METADATA"),
            "Name: ai-edge-litert\nVersion: 2.3.0\n",
        )
        .unwrap();
        std::fs::write(
            di.join("RECORD"),
            "ai_edge_litert/libLiteRt.so,sha256=x,5\n",
        )
        .unwrap();
        assert_eq!(detect_version(&lib).unwrap().text, "2.3.0");
        std::fs::write(
            di.join("RECORD"),
            "ai_edge_litert/libLiteRt.so,sha256=x,6\n",
        )
        .unwrap();
        let e = detect_version(&lib).unwrap_err().to_string();
        assert!(e.contains("records 6 bytes"), "{e}");
        std::fs::remove_dir_all(&di).unwrap();
        let e = detect_version(&lib).unwrap_err().to_string();
        assert!(
            e.contains("cannot tell which ai-edge-litert release"),
            "{e}"
        );
        assert!(e.contains("pip install ai-edge-litert==2.3.0"), "{e}");
        std::fs::write(pkg.join("__init__.py"), "__version__ = \"2.4.0\"\n").unwrap();
        let v = detect_version(&lib).unwrap();
        assert!(check_supported(&v, &lib).is_err());
    }
}
