//! A buffer's bytes: stored ([`Bytes`], usually a slice of the input's memory map), or
//! **deferred**: computed element by element from other bytes when first read.
//!
//! A weight pass that converts every element on its own (float32 → float16) can leave
//! its result deferred: the writer then streams it to the file block by block from a
//! small reused buffer ([`Data::pending`], [`Deferred::encode`]) instead of the pass
//! allocating the whole converted weight, filling it and the writer copying it out
//! again (on a 300 MB model, 150 MB of fresh pages faulted in and zeroed, then freed).
//!
//! Every other reader sees plain bytes: [`Data`] dereferences to `[u8]`, computing and
//! keeping the whole result on the first such read (the reference path: the same
//! function over the whole source). `len` and `is_empty` never compute anything.
//! Equal data compare equal however they are held.

use std::fmt;
use std::ops::{Deref, Range};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

/// A buffer's data. Empty means "no data".
#[derive(Clone, Default)]
pub struct Data(Repr);

#[derive(Clone)]
enum Repr {
    Stored(Bytes),
    Deferred(Arc<Deferred>),
}

impl Default for Repr {
    fn default() -> Self {
        Repr::Stored(Bytes::new())
    }
}

/// Bytes still to be computed: each unit of `unit.0` source bytes gives `unit.1` bytes
/// of data, through `encode` (which converts any whole number of units, the same
/// bytes however the run is cut).
pub struct Deferred {
    src: Bytes,
    unit: (usize, usize),
    encode: fn(&[u8], &mut [u8]),
    done: OnceLock<Bytes>,
}

/// Units converted per task when the whole result is computed (in parallel).
const UNITS_PER_TASK: usize = 1 << 16;

impl Data {
    /// Data computed from `src` by `encode`, `unit.0` source bytes to `unit.1` bytes of
    /// data at a time; a partial unit at the end of `src` is ignored.
    pub fn deferred(src: Bytes, unit: (usize, usize), encode: fn(&[u8], &mut [u8])) -> Self {
        let unit = (unit.0.max(1), unit.1.max(1));
        let units = src.len() / unit.0;
        let src = src.slice(..units * unit.0);
        Data(Repr::Deferred(Arc::new(Deferred {
            src,
            unit,
            encode,
            done: OnceLock::new(),
        })))
    }

    /// Length in bytes (computes nothing).
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Stored(b) => b.len(),
            Repr::Deferred(d) => d.len(),
        }
    }

    /// True when there is no data (computes nothing).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The deferred computation when the data has not been computed yet: the writer
    /// streams it instead of reading the data.
    pub fn pending(&self) -> Option<&Deferred> {
        match &self.0 {
            Repr::Deferred(d) if d.done.get().is_none() => Some(d),
            _ => None,
        }
    }

    /// The data as [`Bytes`] (computed first when deferred).
    pub fn bytes(&self) -> Bytes {
        match &self.0 {
            Repr::Stored(b) => b.clone(),
            Repr::Deferred(d) => d.all().clone(),
        }
    }

    /// Copies the data at `pos..pos + out.len()` into `out`; a deferred one computes
    /// only the units covering that range.
    pub fn copy_at(&self, pos: usize, out: &mut [u8]) {
        match self.pending() {
            None => out.copy_from_slice(&self[pos..pos + out.len()]),
            Some(d) => {
                let u = d.unit.1;
                let start = pos / u * u;
                let end = (pos + out.len()).div_ceil(u) * u;
                let mut tmp = vec![0u8; end - start];
                d.encode(start, &mut tmp);
                out.copy_from_slice(&tmp[pos - start..pos - start + out.len()]);
            }
        }
    }
}

impl Deferred {
    /// Length of the data in bytes.
    pub fn len(&self) -> usize {
        self.src.len() / self.unit.0 * self.unit.1
    }

    /// True when there is nothing to compute.
    pub fn is_empty(&self) -> bool {
        self.src.is_empty()
    }

    /// Bytes of data per unit: [`Self::encode`]'s runs start and end on multiples of it.
    pub fn unit(&self) -> usize {
        self.unit.1
    }

    /// The source bytes data `start..start + len` are computed from (`start` and
    /// `len` multiples of [`Self::unit`]).
    pub fn source_of(&self, start: usize, len: usize) -> &[u8] {
        &self.src[self.source_range(start, len)]
    }

    fn source_range(&self, start: usize, len: usize) -> Range<usize> {
        let (i, o) = self.unit;
        start / o * i..(start + len) / o * i
    }

    /// Computes data `start..start + out.len()` into `out` (`start` and `out.len()`
    /// multiples of [`Self::unit`], within [`Self::len`]).
    pub fn encode(&self, start: usize, out: &mut [u8]) {
        debug_assert!(start.is_multiple_of(self.unit.1) && out.len().is_multiple_of(self.unit.1));
        (self.encode)(self.source_of(start, out.len()), out);
    }

    /// The whole data, computed once (in parallel, [`UNITS_PER_TASK`] units a task).
    fn all(&self) -> &Bytes {
        self.done.get_or_init(|| {
            use rayon::prelude::*;
            let mut out = vec![0u8; self.len()];
            let task = UNITS_PER_TASK * self.unit.1;
            out.par_chunks_mut(task)
                .enumerate()
                .for_each(|(k, dst)| self.encode(k * task, dst));
            Bytes::from(out)
        })
    }
}

impl Deref for Data {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.0 {
            Repr::Stored(b) => b,
            Repr::Deferred(d) => d.all(),
        }
    }
}

impl AsRef<[u8]> for Data {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl PartialEq for Data {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self[..] == other[..]
    }
}

impl fmt::Debug for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Stored(b) => b.fmt(f),
            Repr::Deferred(d) => write!(
                f,
                "Data::deferred({} bytes from {} source bytes)",
                d.len(),
                d.src.len()
            ),
        }
    }
}

impl From<Bytes> for Data {
    fn from(b: Bytes) -> Self {
        Data(Repr::Stored(b))
    }
}

impl From<Vec<u8>> for Data {
    fn from(v: Vec<u8>) -> Self {
        Data(Repr::Stored(v.into()))
    }
}

impl From<&'static [u8]> for Data {
    fn from(v: &'static [u8]) -> Self {
        Data(Repr::Stored(Bytes::from_static(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each 4-byte unit to its first and last byte.
    fn ends(src: &[u8], dst: &mut [u8]) {
        for (s, d) in src.chunks_exact(4).zip(dst.chunks_exact_mut(2)) {
            d.copy_from_slice(&[s[0], s[3]]);
        }
    }

    fn want(src: &[u8]) -> Vec<u8> {
        let mut w = vec![0; src.len() / 4 * 2];
        ends(src, &mut w);
        w
    }

    #[test]
    fn deferred_data_reads_as_the_computed_bytes() {
        // Longer than one task, with a partial unit at the end (ignored).
        let src: Vec<u8> = (0..4 * UNITS_PER_TASK as u32 + 4 * 37 + 3)
            .map(|i| (i * 7 + i / 251) as u8)
            .collect();
        let d = Data::deferred(Bytes::from(src.clone()), (4, 2), ends);
        let w = want(&src[..src.len() - 3]);
        assert_eq!(d.len(), w.len());
        assert!(d.pending().is_some(), "len computed the data");
        let mut window = [0u8; 9];
        d.copy_at(13, &mut window);
        assert_eq!(window, w[13..22]);
        let p = d.pending().expect("copy_at computed the data");
        let mut part = vec![0u8; 6];
        p.encode(20, &mut part);
        assert_eq!(part, w[20..26]);
        assert_eq!(p.source_of(20, 6), &src[40..52]);
        assert_eq!(&d[..], &w[..]);
        assert!(d.pending().is_none());
        assert_eq!(d, Data::from(w.clone()));
        assert_eq!(d.bytes(), Bytes::from(w));
    }

    #[test]
    fn stored_data_is_its_bytes() {
        let d = Data::from(vec![1u8, 2, 3]);
        assert!(d.pending().is_none());
        let mut o = [0u8; 2];
        d.copy_at(1, &mut o);
        assert_eq!(o, [2, 3]);
        assert_eq!(d.len(), 3);
        assert!(Data::default().is_empty());
    }
}
