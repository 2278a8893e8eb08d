//! Error metrics of a test tensor against a reference tensor, accumulated in `f64` over
//! every element of every sample (the tensors of all samples are treated as one
//! flattened vector `r` for the reference model and `t` for the model under test):
//!
//! * `SQNR = 10·log10(Σ r² / Σ (r − t)²)` in dB; `+∞` when the values are identical
//!   (`Σ (r − t)² = 0`), `−∞` when the reference is all zeros and the test is not;
//! * `MSE = Σ (r − t)² / n`;
//! * `max_abs = max |r − t|`;
//! * `cosine = Σ r·t / (√Σ r² · √Σ t²)`; 1 when both are all zeros, 0 when only one is;
//! * top-1 agreement (class scores): the fraction of rows whose argmax (first index of
//!   the largest value, as `numpy.argmax`) is the same in both;
//! * agreement (non-real tensors: indices, booleans, unquantized integers): the fraction
//!   of elements that are equal.
//!
//! A NaN anywhere makes the metrics it enters NaN.

use serde::Serialize;

/// Running sums for one pair of tensors.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Accumulator {
    /// Elements seen.
    pub n: u64,
    sum_ref2: f64,
    sum_test2: f64,
    sum_err2: f64,
    dot: f64,
    max_abs: f64,
    /// Elements equal in both (exact comparison).
    equal: u64,
    rows: u64,
    rows_agree: u64,
}

impl Accumulator {
    /// Adds real values (same length; the caller checks).
    pub fn add_real(&mut self, reference: &[f64], test: &[f64]) {
        for (&r, &t) in reference.iter().zip(test) {
            let e = r - t;
            self.sum_ref2 += r * r;
            self.sum_test2 += t * t;
            self.sum_err2 += e * e;
            self.dot += r * t;
            let a = e.abs();
            // A NaN difference sticks.
            if a > self.max_abs || a.is_nan() {
                self.max_abs = a;
            }
            self.equal += u64::from(r == t);
        }
        self.n += reference.len().min(test.len()) as u64;
    }

    /// Adds rows of class scores (`classes` values per row) for top-1 agreement.
    pub fn add_top1(&mut self, reference: &[f64], test: &[f64], classes: usize) {
        if classes == 0 {
            return;
        }
        for (r, t) in reference.chunks(classes).zip(test.chunks(classes)) {
            self.rows += 1;
            self.rows_agree += u64::from(argmax(r) == argmax(t));
        }
    }

    /// Adds values compared for equality only.
    pub fn add_exact(&mut self, reference: &[f64], test: &[f64]) {
        self.equal += reference.iter().zip(test).filter(|(r, t)| r == t).count() as u64;
        self.n += reference.len().min(test.len()) as u64;
    }

    /// The metrics so far (see the module documentation).
    pub fn metrics(&self) -> Metrics {
        let n = self.n as f64;
        let sqnr_db = if self.sum_err2 == 0.0 {
            f64::INFINITY
        } else {
            10.0 * (self.sum_ref2 / self.sum_err2).log10()
        };
        let norms = self.sum_ref2.sqrt() * self.sum_test2.sqrt();
        let cosine = if self.sum_ref2 == 0.0 && self.sum_test2 == 0.0 {
            1.0
        } else if norms == 0.0 {
            0.0
        } else {
            self.dot / norms
        };
        let noise_ratio = if self.sum_err2 == 0.0 {
            0.0
        } else {
            self.sum_err2 / self.sum_ref2
        };
        Metrics {
            sqnr_db,
            noise_ratio,
            mse: if self.n == 0 { 0.0 } else { self.sum_err2 / n },
            max_abs: self.max_abs,
            cosine,
            identical: self.n > 0 && self.equal == self.n,
            agreement: if self.n == 0 {
                1.0
            } else {
                self.equal as f64 / n
            },
            top1: (self.rows > 0).then(|| self.rows_agree as f64 / self.rows as f64),
        }
    }
}

/// Index of the first largest value (NaN never wins; all-NaN gives 0).
pub fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] || v[best].is_nan() && !x.is_nan() {
            best = i;
        }
    }
    best
}

/// The metrics of one tensor pair (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Metrics {
    pub sqnr_db: f64,
    /// `Σ (r − t)² / Σ r²` (0 when identical): SQNR as a linear ratio, inverted.
    #[serde(skip)]
    pub noise_ratio: f64,
    pub mse: f64,
    pub max_abs: f64,
    pub cosine: f64,
    /// Every element equal.
    pub identical: bool,
    /// Fraction of elements exactly equal.
    pub agreement: f64,
    /// Top-1 agreement, for class scores.
    pub top1: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_on_a_small_example() {
        let mut a = Accumulator::default();
        a.add_real(&[1.0, 2.0], &[1.0, 1.0]);
        a.add_real(&[-2.0], &[-2.5]);
        let m = a.metrics();
        // Σr² = 9, Σ(r−t)² = 1.25, n = 3.
        assert!((m.sqnr_db - 10.0 * (9.0f64 / 1.25).log10()).abs() < 1e-12);
        assert!((m.mse - 1.25 / 3.0).abs() < 1e-15);
        assert_eq!(m.max_abs, 1.0);
        let cos = (1.0 + 2.0 + 5.0) / (9.0f64.sqrt() * (1.0f64 + 1.0 + 6.25).sqrt());
        assert!((m.cosine - cos).abs() < 1e-15);
        assert!(!m.identical);
        assert!((m.agreement - 1.0 / 3.0).abs() < 1e-15);
        assert_eq!(m.top1, None);
    }

    #[test]
    fn identical_zero_and_nan_edge_cases() {
        let mut same = Accumulator::default();
        same.add_real(&[0.5, -1.0], &[0.5, -1.0]);
        let m = same.metrics();
        assert_eq!(m.sqnr_db, f64::INFINITY);
        assert_eq!((m.mse, m.max_abs), (0.0, 0.0));
        assert!(m.identical);

        let mut zeros = Accumulator::default();
        zeros.add_real(&[0.0, 0.0], &[0.0, 0.0]);
        assert_eq!(zeros.metrics().cosine, 1.0);
        let mut off = Accumulator::default();
        off.add_real(&[0.0, 0.0], &[0.0, 1.0]);
        assert_eq!(off.metrics().sqnr_db, f64::NEG_INFINITY);
        assert_eq!(off.metrics().cosine, 0.0);

        let mut nan = Accumulator::default();
        nan.add_real(&[1.0, 2.0], &[f64::NAN, 2.0]);
        let m = nan.metrics();
        assert!(m.sqnr_db.is_nan() && m.mse.is_nan() && m.max_abs.is_nan());
    }

    #[test]
    fn top1_and_exact_agreement() {
        let mut a = Accumulator::default();
        a.add_top1(
            &[0.1, 0.7, 0.2, 0.5, 0.5, 0.0],
            &[0.0, 0.9, 0.1, 0.1, 0.8, 0.1],
            3,
        );
        // Row 1: argmax 1 vs 1; row 2: first of a tie (0) vs 1.
        assert_eq!(a.metrics().top1, Some(0.5));
        assert_eq!(argmax(&[f64::NAN, 1.0, 3.0, 3.0]), 2);

        let mut e = Accumulator::default();
        e.add_exact(&[1.0, 2.0, 3.0, 4.0], &[1.0, 0.0, 3.0, 4.0]);
        assert_eq!(e.metrics().agreement, 0.75);
    }
}
