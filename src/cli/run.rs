//! `tflquant run MODEL --input IN.npz|IN.npy|DIR [-o OUT.npz] [--tensors all|NAME,...]`:
//! runs the model on every sample with the reference interpreter.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use tflquant::data::{self, Array, ArrayData};
use tflquant::interp::{Flow, Interpreter, TensorId, Value};
use tflquant::{Error, Result};

use super::calibrate::{DataArgs, log_timings, progress_bar};

#[derive(clap::Args)]
pub struct Args {
    /// Model (.tflite).
    model: PathBuf,
    /// Samples: .npy (single input), .npz (one array per input), or a directory of
    /// PNG/JPEG images.
    #[arg(long)]
    input: PathBuf,
    /// Write outputs (and --tensors) to this .npz, keyed by tensor name, samples on the
    /// first axis. Without it, print a summary per output.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Also save intermediate tensors of the main subgraph: `all`, or names separated
    /// by commas.
    #[arg(long, value_delimiter = ',', requires = "output")]
    tensors: Option<Vec<String>>,
    #[command(flatten)]
    data_args: DataArgs,
}

/// Stacks per-sample values on a new first axis; a leading batch dimension of 1 is
/// dropped (`[1, 10]` per sample → `[N, 10]`), as in the input files.
fn stack(name: &str, vals: &[Value]) -> Result<Array> {
    let first = &vals[0];
    for v in vals {
        if v.shape != first.shape || v.dtype() != first.dtype() {
            return Err(Error::Data(format!(
                "tensor {name:?} has shape {:?} in one sample and {:?} in another; cannot stack",
                first.shape, v.shape
            )));
        }
    }
    let mut shape = vec![vals.len()];
    let per = if first.shape.first() == Some(&1) {
        &first.shape[1..]
    } else {
        &first.shape[..]
    };
    shape.extend_from_slice(per);
    let arrays: Vec<Array> = vals.iter().map(|v| v.to_array()).collect();
    macro_rules! cat {
        ($var:ident) => {{
            let mut out = Vec::new();
            for a in &arrays {
                if let ArrayData::$var(x) = &a.data {
                    out.extend_from_slice(x);
                }
            }
            ArrayData::$var(out)
        }};
    }
    let data = match &arrays[0].data {
        ArrayData::F32(_) => cat!(F32),
        ArrayData::F64(_) => cat!(F64),
        ArrayData::I8(_) => cat!(I8),
        ArrayData::U8(_) => cat!(U8),
        ArrayData::I16(_) => cat!(I16),
        ArrayData::U16(_) => cat!(U16),
        ArrayData::I32(_) => cat!(I32),
        ArrayData::U32(_) => cat!(U32),
        ArrayData::I64(_) => cat!(I64),
        ArrayData::U64(_) => cat!(U64),
        ArrayData::Bool(_) => cat!(Bool),
    };
    Ok(Array::new(shape, data))
}

pub fn run(a: Args) -> Result<()> {
    a.data_args.apply_threads()?;
    let model = tflquant::read_path(&a.model)?;
    let samples = tflquant::calib::Samples::open(&a.input, &model, &a.data_args.sample_options()?)?;
    let total = samples.len();
    if total == 0 {
        return Err(Error::Data(format!("{}: no samples", a.input.display())));
    }
    let Some(sg) = model.subgraphs.first() else {
        return Err(Error::Malformed {
            at: tflquant::error::Loc::model(),
            what: "the model has no subgraph".into(),
        });
    };
    // Which intermediates to keep (subgraph 0 tensor indices).
    let wanted: Vec<usize> = match &a.tensors {
        None => Vec::new(),
        Some(list) if list.len() == 1 && list[0] == "all" => (0..sg.tensors.len())
            .filter(|&t| !model.is_constant(&sg.tensors[t]))
            .collect(),
        Some(list) => {
            let mut v = Vec::new();
            for name in list {
                let found: Vec<usize> = (0..sg.tensors.len())
                    .filter(|&t| &sg.tensors[t].name == name)
                    .collect();
                if found.is_empty() {
                    return Err(Error::Usage(format!(
                        "--tensors: subgraph 0 has no tensor named {name:?} (see `tflquant inspect --tensors`)"
                    )));
                }
                v.extend(found);
            }
            v
        }
    };
    let mut interp = Interpreter::new(&model)?;
    interp.set_reset_policy(samples.reset_policy());
    interp.set_timing(log::log_enabled!(log::Level::Info));
    let seq = samples.sequences();
    let mut outputs: Vec<Vec<Value>> = vec![Vec::new(); sg.outputs.len()];
    let mut kept: BTreeMap<usize, Vec<Value>> = BTreeMap::new();
    let pb = progress_bar(total, "running");
    for (i, s) in samples.enumerate() {
        if seq.starts_sequence(i) {
            interp.reset_state();
        }
        let s = s?;
        let mut seen: HashMap<usize, Value> = HashMap::new();
        let mut obs = |id: TensorId, v: &Value| {
            if id.subgraph == 0 && wanted.contains(&id.tensor) {
                seen.insert(id.tensor, v.clone());
            }
            Flow::Continue
        };
        let outs = interp
            .run_observed(&s, &mut obs)?
            .ok_or_else(|| Error::Internal("run stopped".into()))?;
        for (acc, v) in outputs.iter_mut().zip(outs) {
            acc.push(v);
        }
        for (t, v) in seen {
            kept.entry(t).or_default().push(v);
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    log_timings(&interp);
    let mut arrays: Vec<(String, Array)> = Vec::new();
    for (&t, vals) in sg.outputs.iter().zip(&outputs) {
        let name = sg.tensors[t as usize].name.clone();
        arrays.push((name.clone(), stack(&name, vals)?));
    }
    for (t, vals) in &kept {
        let name = &sg.tensors[*t].name;
        if arrays.iter().any(|(n, _)| n == name) {
            continue;
        }
        if vals.len() != total {
            log::warn!("tensor {name:?} has no value in every sample; not saved");
            continue;
        }
        arrays.push((name.clone(), stack(name, vals)?));
    }
    match &a.output {
        Some(path) => {
            data::write_npz(path, &arrays)?;
            log::info!("wrote {} arrays to {}", arrays.len(), path.display());
        }
        None => {
            println!("{total} sample{} run", if total == 1 { "" } else { "s" });
            for (name, arr) in &arrays {
                let v = arr.data.to_f64();
                let (mn, mx) = v
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                        (a.min(x), b.max(x))
                    });
                let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
                println!(
                    "{name}  {} {:?}  min {mn:.6} max {mx:.6} mean {mean:.6}",
                    arr.data.dtype_name(),
                    arr.shape
                );
            }
        }
    }
    Ok(())
}
