//! Weight PTQ algorithms of the integer modes (`quant::ptq`, issue #15 item 3) on
//! models built in Rust ([`crate::planner::Graph`]), run on LiteRT:
//! - `--weight-clipping mse` gives each channel a weight error no larger than min/max's
//!   and outputs within the bound the clipped weights imply;
//! - int8's default `mse-hidden` clips hidden layers and leaves the output layer at
//!   min/max;
//! - `--bias-correction` removes the mean output error that weights built to round
//!   one way add, in FULLY_CONNECTED, CONV_2D and DEPTHWISE_CONV_2D.

use tflquant::calib::{Calibrator, ObserverKind};
use tflquant::data::Array;
use tflquant::fb::{self, BuiltinOperator as Op};
use tflquant::interp::Value;
use tflquant::ir::Model;
use tflquant::quant::{self, Mode, Options, Report, ptq::WeightClipping};

use crate::common::*;
use crate::planner::Graph;

/// A fixed pseudo-random sequence (xorshift) in [0, 1).
fn uniform(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.max(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}

/// int8 options with min/max ranges of `samples` (reference interpreter), the samples
/// themselves (bias correction measures on them) and the given algorithms.
fn options(m: &Model, samples: &[Vec<Value>], clip: WeightClipping, bc: bool) -> Options {
    let mut c = Calibrator::new(m, ObserverKind::MinMax).unwrap();
    for s in samples {
        c.add_sample(s).unwrap();
    }
    let mut o = Options::new(Mode::Int8);
    o.ranges = Some(c.ranges());
    o.samples = Some(std::sync::Arc::new(samples.to_vec()));
    o.weight_clipping = Some(clip);
    o.bias_correction = Some(bc);
    o
}

fn quantize(m: &Model, o: &Options) -> (Model, Report) {
    let (q, r) = quant::quantize(m, o).unwrap_or_else(|e| panic!("{e}"));
    tflquant::ir::verify(&q).unwrap();
    (q, r)
}

fn write(dir: &std::path::Path, name: &str, m: &Model) -> std::path::PathBuf {
    let p = dir.join(name);
    tflquant::writer::write_path(m, &p, &Default::default()).unwrap();
    p
}

/// Input `pos` of the first `op` of subgraph 0.
fn operand(m: &Model, op: Op, pos: usize) -> &tflquant::ir::Tensor {
    let sg = &m.subgraphs[0];
    let o = sg.operators.iter().find(|o| m.builtin(o) == op).unwrap();
    &sg.tensors[o.inputs[pos] as usize]
}

fn assert_finite(what: &str, v: &[f64]) {
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        panic!("{what}: non-finite value {} at {i}", v[i]);
    }
}

/// FULLY_CONNECTED `[8, 1024]` with bell-shaped rows (sums of four uniforms): the
/// largest values of each row are worth clipping at 8 bits. Per channel, the weight
/// error of the written int8 weight is at most min/max's; on LiteRT every output is
/// within `Σ|Δw|·|x| + Σ|w|·s_in/2 + s_out` of the float model, `Δw` the written
/// weight's actual error (clipped values included).
#[test]
fn mse_clipping_never_raises_a_channels_weight_error_and_stays_within_its_bound() {
    let (rows, cols, n) = (8usize, 1024usize, 16usize);
    let u = uniform(rows * cols * 4, 5);
    let wv: Vec<f32> = u
        .chunks(4)
        .map(|c| c.iter().sum::<f32>() / 2.0 - 1.0)
        .collect();
    let mut g = Graph::new();
    let x = g.act("x", &[1, cols as i32]);
    let w = g.constant("w", &[rows as i32, cols as i32], &wv);
    let b = g.constant("b", &[rows as i32], &[0.1; 8]);
    let y = g.act("y", &[1, rows as i32]);
    g.op(
        Op::FullyConnected,
        &[x, w, b],
        &[y],
        Some(fb::BuiltinOptions::FullyConnectedOptions(Box::default())),
    );
    let m = g.finish(&[x], &[y]);
    let xs: Vec<f32> = uniform(n * cols, 9).iter().map(|v| 2.0 * v - 1.0).collect();
    let samples: Vec<Vec<Value>> = xs
        .chunks(cols)
        .map(|c| vec![Value::f32(vec![1, cols], c.to_vec())])
        .collect();
    let (qm, _) = quantize(&m, &options(&m, &samples, WeightClipping::Minmax, false));
    let (qs, report) = quantize(&m, &options(&m, &samples, WeightClipping::Mse, false));
    let clip = report.ptq[0].clipping.expect("clipping recorded");
    assert!(clip.clipped > 0, "{clip:?}");
    assert!(clip.sq_err_chosen < clip.sq_err_minmax, "{clip:?}");

    let err_per_channel = |q: &Model| -> (Vec<f64>, Vec<f64>) {
        let t = operand(q, Op::FullyConnected, 1);
        let p = t.quantized().unwrap();
        let ints: Vec<i8> = q.tensor_data(t).iter().map(|&v| v as i8).collect();
        let d: Vec<f64> = (0..rows * cols)
            .map(|i| ints[i] as f64 * p.scale[i / cols] as f64 - wv[i] as f64)
            .collect();
        let e = (0..rows)
            .map(|r| d[r * cols..(r + 1) * cols].iter().map(|v| v * v).sum())
            .collect();
        (e, d)
    };
    let (em, _) = err_per_channel(&qm);
    let (es, ds) = err_per_channel(&qs);
    for r in 0..rows {
        assert!(
            es[r] <= em[r],
            "channel {r}: mse {} > minmax {}",
            es[r],
            em[r]
        );
    }
    assert!(es.iter().sum::<f64>() < em.iter().sum::<f64>());

    let dir = tempfile::tempdir().unwrap();
    let fp = write(dir.path(), "f.tflite", &m);
    let qp = write(dir.path(), "q.tflite", &qs);
    let input = vec![Array::f32(vec![n, 1, cols], xs.clone())];
    let f = litert_run(&fp, &input).unwrap()[0].data.to_f64();
    let got = litert_run(&qp, &input).unwrap()[0].data.to_f64();
    assert_finite("mse-clipped int8", &got);
    let sg = &qs.subgraphs[0];
    let s_in = operand(&qs, Op::FullyConnected, 0)
        .quantized()
        .unwrap()
        .scale[0] as f64;
    let out = sg.operators[0].outputs[0] as usize;
    let s_out = sg.tensors[out].quantized().unwrap().scale[0] as f64;
    for k in 0..n * rows {
        let (s, r) = (k / rows, k % rows);
        let xr = &xs[s * cols..(s + 1) * cols];
        let wr = &wv[r * cols..(r + 1) * cols];
        let bound = (0..cols)
            .map(|i| ds[r * cols + i].abs() * xr[i].abs() as f64)
            .sum::<f64>()
            + wr.iter().map(|v| v.abs() as f64).sum::<f64>() * s_in / 2.0
            + s_out;
        assert!(
            (f[k] - got[k]).abs() <= bound,
            "sample {s} channel {r}: {} vs {} (bound {bound})",
            got[k],
            f[k]
        );
    }
}

/// Bell-shaped `[rows, cols]` weights (sums of four uniforms, as above).
fn bell(rows: usize, cols: usize, seed: u64) -> Vec<f32> {
    uniform(rows * cols * 4, seed)
        .chunks(4)
        .map(|c| c.iter().sum::<f32>() / 2.0 - 1.0)
        .collect()
}

/// FULLY_CONNECTED `[1024, 1024]` → FULLY_CONNECTED `[8, 1024]` (the model output), both
/// bell-shaped (worth clipping at 8 bits: explicit `mse` clips both). int8's default
/// (`mse-hidden`) clips the hidden layer and writes the output layer's weight with its
/// min/max scales, every integer `round(w / s)`; LiteRT runs the result.
#[test]
fn default_int8_clipping_leaves_the_output_layer_at_min_max_litert() {
    let (cols, out, n) = (1024usize, 8usize, 8usize);
    let mut g = Graph::new();
    let x = g.act("x", &[1, cols as i32]);
    let w1v = bell(cols, cols, 31);
    let w2v = bell(out, cols, 37);
    let w1 = g.constant("w1", &[cols as i32, cols as i32], &w1v);
    let b1 = g.constant("b1", &[cols as i32], &vec![0.05; cols]);
    let h = g.act("h", &[1, cols as i32]);
    let w2 = g.constant("w2", &[out as i32, cols as i32], &w2v);
    let b2 = g.constant("b2", &[out as i32], &[0.1; 8]);
    let y = g.act("y", &[1, out as i32]);
    let fc = || Some(fb::BuiltinOptions::FullyConnectedOptions(Box::default()));
    g.op(Op::FullyConnected, &[x, w1, b1], &[h], fc());
    g.op(Op::FullyConnected, &[h, w2, b2], &[y], fc());
    let m = g.finish(&[x], &[y]);
    let xs: Vec<f32> = uniform(n * cols, 41)
        .iter()
        .map(|v| 2.0 * v - 1.0)
        .collect();
    let samples: Vec<Vec<Value>> = xs
        .chunks(cols)
        .map(|c| vec![Value::f32(vec![1, cols], c.to_vec())])
        .collect();
    let mut o = options(&m, &samples, WeightClipping::Minmax, false);
    o.weight_clipping = None;
    let (qd, rd) = quantize(&m, &o);
    let (_, rm) = quantize(&m, &options(&m, &samples, WeightClipping::Mse, false));
    let clipped = |r: &Report, op: usize| {
        r.ptq
            .iter()
            .find(|l| l.operator == op)
            .and_then(|l| l.clipping)
            .map_or(0, |c| c.clipped)
    };
    // The construction clips both layers under mse; the default only the hidden one.
    assert!(clipped(&rm, 0) > 0 && clipped(&rm, 1) > 0, "{:?}", rm.ptq);
    assert!(clipped(&rd, 0) > 0, "{:?}", rd.ptq);
    assert_eq!(clipped(&rd, 1), 0, "{:?}", rd.ptq);
    // The output layer's weight: min/max scales, integers round(w / s).
    let sg = &qd.subgraphs[0];
    let fc2 = sg
        .operators
        .iter()
        .filter(|o| qd.builtin(o) == Op::FullyConnected)
        .nth(1)
        .unwrap();
    let t = &sg.tensors[fc2.inputs[1] as usize];
    let p = t.quantized().unwrap();
    let ints: Vec<i8> = qd.tensor_data(t).iter().map(|&v| v as i8).collect();
    for r in 0..out {
        let row = &w2v[r * cols..(r + 1) * cols];
        let s = row.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0;
        assert_eq!(p.scale[r], s, "row {r}");
        for (i, &v) in row.iter().enumerate() {
            assert_eq!(
                ints[r * cols + i] as f32,
                (v / s).round(),
                "row {r}, element {i}"
            );
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let qp = write(dir.path(), "q.tflite", &qd);
    let got = litert_run(&qp, &[Array::f32(vec![n, 1, cols], xs)]).unwrap()[0]
        .data
        .to_f64();
    assert_eq!(got.len(), n * out);
    assert_finite("mse-hidden int8", &got);
}

/// Weights of one output channel: `(k + 0.45)·s` for k spread over [lo, 120), and one value
/// at `127·s` that fixes the min/max scale `s`: every other value rounds down by
/// 0.45 steps, so the quantized layer adds `−0.45·s·Σ E[x]` to its output.
fn biased_channel(len: usize, s: f32, lo: f32, seed: u64) -> Vec<f32> {
    let u = uniform(len, seed);
    (0..len)
        .map(|i| {
            if i == 0 {
                127.0 * s
            } else {
                ((u[i] * (120.0 - lo)).floor() + lo + 0.45) * s
            }
        })
        .collect()
}

/// CONV_2D (3×3, SAME) → DEPTHWISE_CONV_2D (3×3, SAME, multiplier 2) →
/// FULLY_CONNECTED, every weight built by [`biased_channel`], inputs in [0, 1], weights
/// of positive mean where the next layer needs an input of non-zero mean. Per output channel of each
/// layer (all three are model outputs), over held-out samples on LiteRT: without
/// correction the RMS over channels of the mean error is over half an output step (more
/// than output rounding can cause: the construction works); with it, per channel,
/// under a quarter of the uncorrected error and under a quarter of a step plus the
/// previous layer's remaining mean error carried through the float weights (the
/// correction is measured on the float model's inputs; what is left: activation
/// rounding, held-out vs calibration means). The
/// report has a correction for each layer.
#[test]
fn bias_correction_removes_the_mean_error_of_biased_weight_rounding() {
    let (h, w, c) = (6usize, 6usize, 16usize);
    let (c1, c2, fo) = (6usize, 12usize, 5usize);
    let mut g = Graph::new();
    let x = g.act("x", &[1, h as i32, w as i32, c as i32]);
    let w1: Vec<f32> = (0..c1)
        .flat_map(|o| biased_channel(9 * c, 0.01, -60.0, 11 + o as u64))
        .collect();
    let w1 = g.constant("w1", &[c1 as i32, 3, 3, c as i32], &w1);
    let b1 = g.constant("b1", &[c1 as i32], &[0.2, -0.1, 0.3, 0.0, 0.1, 0.2]);
    let y1 = g.act("y1", &[1, h as i32, w as i32, c1 as i32]);
    g.op(
        Op::Conv2d,
        &[x, w1, b1],
        &[y1],
        Some(fb::BuiltinOptions::Conv2DOptions(Box::new(
            fb::Conv2DOptions {
                padding: fb::Padding::Same,
                stride_w: 1,
                stride_h: 1,
                dilation_w_factor: 1,
                dilation_h_factor: 1,
                ..Default::default()
            },
        ))),
    );
    // Depthwise [1, 3, 3, c2]: channel o's nine taps from biased_channel.
    let per: Vec<Vec<f32>> = (0..c2)
        .map(|o| biased_channel(9, 0.02, -120.0, 31 + o as u64))
        .collect();
    let w2v: Vec<f32> = (0..9).flat_map(|t| per.iter().map(move |p| p[t])).collect();
    let w2 = g.constant("w2", &[1, 3, 3, c2 as i32], &w2v);
    let b2 = g.constant("b2", &[c2 as i32], &[0.2; 12]);
    let y2 = g.act("y2", &[1, h as i32, w as i32, c2 as i32]);
    g.op(
        Op::DepthwiseConv2d,
        &[y1, w2, b2],
        &[y2],
        Some(fb::BuiltinOptions::DepthwiseConv2DOptions(Box::new(
            fb::DepthwiseConv2DOptions {
                padding: fb::Padding::Same,
                stride_w: 1,
                stride_h: 1,
                depth_multiplier: 2,
                dilation_w_factor: 1,
                dilation_h_factor: 1,
                ..Default::default()
            },
        ))),
    );
    let k3 = h * w * c2;
    let w3v: Vec<f32> = (0..fo)
        .flat_map(|o| biased_channel(k3, 0.002, -60.0, 51 + o as u64))
        .collect();
    let w3 = g.constant("w3", &[fo as i32, k3 as i32], &w3v);
    let b3 = g.constant("b3", &[fo as i32], &[0.1; 5]);
    let y3 = g.act("y3", &[1, fo as i32]);
    g.op(
        Op::FullyConnected,
        &[y2, w3, b3],
        &[y3],
        Some(fb::BuiltinOptions::FullyConnectedOptions(Box::default())),
    );
    let m = g.finish(&[x], &[y1, y2, y3]);

    let len = h * w * c;
    let (n_cal, n_test) = (32usize, 32usize);
    let all = uniform((n_cal + n_test) * len, 77);
    let cal: Vec<Vec<Value>> = all[..n_cal * len]
        .chunks(len)
        .map(|s| vec![Value::f32(vec![1, h, w, c], s.to_vec())])
        .collect();
    let test = &all[n_cal * len..];
    let (q0, _) = quantize(&m, &options(&m, &cal, WeightClipping::Minmax, false));
    let (q1, report) = quantize(&m, &options(&m, &cal, WeightClipping::Minmax, true));
    let layers: Vec<_> = report
        .ptq
        .iter()
        .map(|l| {
            (
                l.op.as_str(),
                l.bias_correction.as_ref().map(|b| b.skipped.clone()),
            )
        })
        .collect();
    assert_eq!(
        layers,
        [
            ("CONV_2D", Some(None)),
            ("DEPTHWISE_CONV_2D", Some(None)),
            ("FULLY_CONNECTED", Some(None))
        ]
    );

    let dir = tempfile::tempdir().unwrap();
    let input = vec![Array::f32(vec![n_test, 1, h, w, c], test.to_vec())];
    let run = |name: &str, q: &Model| -> Vec<Vec<f64>> {
        let p = write(dir.path(), name, q);
        litert_run(&p, &input)
            .unwrap()
            .iter()
            .map(|a| a.data.to_f64())
            .collect()
    };
    let f = run("f.tflite", &m);
    let (o0, o1) = (run("q0.tflite", &q0), run("q1.tflite", &q1));
    let sg = &q1.subgraphs[0];
    // The corrected mean error of the previous layer's output, per channel.
    let mut upstream: Vec<f64> = Vec::new();
    for (k, (&t, ch)) in sg.outputs.iter().zip([c1, c2, fo]).enumerate() {
        // Float outputs: the DEQUANTIZE's input carries the step.
        let prod = sg
            .operators
            .iter()
            .find(|o| o.outputs[0] == t)
            .map(|o| o.inputs[0] as usize)
            .unwrap();
        let s_out = sg.tensors[prod].quantized().unwrap().scale[0] as f64;
        assert_finite("uncorrected", &o0[k]);
        assert_finite("corrected", &o1[k]);
        let mean_err = |o: &[f64]| -> Vec<f64> {
            let mut e = vec![0f64; ch];
            for (i, (a, b)) in o.iter().zip(&f[k]).enumerate() {
                e[i % ch] += a - b;
            }
            let cnt = (o.len() / ch) as f64;
            e.iter().map(|v| v / cnt).collect()
        };
        let (e0, e1) = (mean_err(&o0[k]), mean_err(&o1[k]));
        // Output rounding alone moves a mean by at most half a step: the uncorrected
        // layers are biased by more (RMS over channels; a channel can cancel).
        let rms0 = (e0.iter().map(|v| v * v).sum::<f64>() / ch as f64).sqrt();
        assert!(
            rms0 > 0.5 * s_out,
            "output {k}: uncorrected mean error RMS {rms0} is not over half a step {s_out}"
        );
        // What the layer's own correction cannot remove: its input's remaining mean
        // error, carried through its float weights (Σ |w|·|e_in| per output channel).
        let carried: Vec<f64> = match k {
            0 => vec![0.0; ch],
            1 => (0..ch)
                .map(|o| {
                    (0..9)
                        .map(|t| (w2v[t * c2 + o].abs() as f64) * upstream[o / 2].abs())
                        .sum()
                })
                .collect(),
            _ => (0..ch)
                .map(|o| {
                    (0..k3)
                        .map(|i| (w3v[o * k3 + i].abs() as f64) * upstream[i % c2].abs())
                        .sum()
                })
                .collect(),
        };
        for j in 0..ch {
            assert!(
                e1[j].abs() <= 0.25 * s_out + carried[j] && e1[j].abs() <= e0[j].abs() / 4.0,
                "output {k} channel {j}: corrected mean error {} (uncorrected {}, step {s_out})",
                e1[j],
                e0[j]
            );
        }
        upstream = e1;
    }
}

/// Flag checks: bias correction needs calibration samples (ranges alone do not carry
/// them), and both flags belong to the full-integer modes (exit code 2, the flag named).
#[test]
fn ptq_flags_outside_their_modes_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let m = testdata("cnn_digits.tflite");
    let out = dir.path().join("o.tflite");
    let ranges = dir.path().join("r.json");
    let (code, _, err) = run_cli(&[
        "calibrate".as_ref(),
        m.as_os_str(),
        "--data".as_ref(),
        testdata("cnn_digits.calib.npy").as_os_str(),
        "-o".as_ref(),
        ranges.as_os_str(),
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = quantize_run(
        &m,
        &out,
        &[
            "--mode",
            "int8",
            "--ranges",
            ranges.to_str().unwrap(),
            "--bias-correction",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--bias-correction needs --calibration"),
        "{err}"
    );
    for flag in [
        &["--weight-clipping", "mse"][..],
        &["--bias-correction", "on"],
    ] {
        let mut args = vec!["--mode", "weight-int8"];
        args.extend_from_slice(flag);
        let (code, _, err) = quantize_run(&m, &out, &args);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(flag[0]), "{err}");
    }
}
