//! [`DriftBuffer`]: a FIFO between two clocks that keeps its fill level near a
//! target by slipping single samples.
//!
//! A sound card's clock and the system clock (which paces the media pump and the
//! jitter buffer's playout) never agree exactly: 50–200 ppm apart is normal, so
//! a plain FIFO between them slowly fills up (latency creeps up) or runs dry
//! (a click every few minutes). The buffer watches the *smallest* surplus it had
//! at pull time over a window of pulls; if that surplus stays above the target it
//! drops one sample, if below it repeats one, blending the neighbours so the slip
//! is inaudible; at most one per 10 ms of audio, which corrects up to 2 000 ppm.
//!
//! A large excess (a stalled reader, a burst after a scheduling hiccup) is cut at
//! once back to the target, and an empty buffer re-primes: after an underrun the
//! reader gets silence until a target's worth of samples is queued again, so a
//! held call (nothing written) is simply silent.

use std::collections::VecDeque;

/// Counters of what the buffer did, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DriftStats {
    /// Pulls that found fewer samples than asked (the rest was silence).
    pub underruns: u64,
    /// Single samples dropped to bring the level down (reader slower than writer).
    pub dropped: u64,
    /// Single samples repeated to bring the level up (reader faster than writer).
    pub inserted: u64,
    /// Samples discarded at once because the level was far above the target.
    pub trimmed: u64,
}

/// A single-reader, single-writer FIFO of mono samples with drift control.
///
/// The writer calls [`push`](DriftBuffer::push) at its pace, the reader
/// [`pull`](DriftBuffer::pull) at its own; both may use any chunk size.
#[derive(Debug, Clone)]
pub struct DriftBuffer {
    buf: VecDeque<f32>,
    /// The surplus (samples left after a pull) the buffer steers towards.
    target: usize,
    /// Tolerance around the target before slipping starts.
    tolerance: usize,
    /// Above `target + max_excess` the surplus is cut at once.
    max_excess: usize,
    primed: bool,
    /// The largest chunk the writer pushed lately (sets the priming level).
    max_push: usize,
    /// Samples pulled per evaluation window.
    window: usize,
    pulled: usize,
    /// Samples pulled since the last slip (at most one slip per 480 samples).
    since_slip: usize,
    window_min: usize,
    /// Samples still to drop (> 0) or insert (< 0), one per pull.
    pending: i64,
    stats: DriftStats,
}

impl DriftBuffer {
    /// A buffer steering to `target` surplus samples; excess beyond
    /// `target + max_excess` is cut at once. `window` is the number of samples
    /// pulled over which the smallest surplus is judged (half a second is right).
    pub fn new(target: usize, max_excess: usize, window: usize) -> Self {
        DriftBuffer {
            buf: VecDeque::with_capacity(target + max_excess + 4096),
            target,
            tolerance: (target / 4).max(48),
            max_excess: max_excess.max(1),
            primed: false,
            max_push: 0,
            window: window.max(1),
            pulled: 0,
            since_slip: 0,
            window_min: usize::MAX,
            pending: 0,
            stats: DriftStats::default(),
        }
    }

    /// Appends samples.
    pub fn push(&mut self, samples: &[f32]) {
        self.max_push = self.max_push.max(samples.len());
        self.buf.extend(samples.iter().copied());
    }

    /// Appends 16-bit samples.
    pub fn push_i16(&mut self, samples: &[i16]) {
        self.max_push = self.max_push.max(samples.len());
        self.buf
            .extend(samples.iter().map(|&s| f32::from(s) / 32_768.0));
    }

    /// Samples queued now.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// What the buffer did so far.
    pub fn stats(&self) -> DriftStats {
        self.stats
    }

    /// The surplus the buffer steers towards, in samples.
    pub fn target(&self) -> usize {
        self.target
    }

    /// Discards everything and waits to be primed again.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.primed = false;
        self.reset_window();
    }

    fn reset_window(&mut self) {
        self.pulled = 0;
        self.window_min = usize::MAX;
        self.pending = 0;
    }

    /// Fills `out` completely and returns how many of its samples came from the
    /// buffer (the rest is silence: not primed yet, or an underrun).
    pub fn pull(&mut self, out: &mut [f32]) -> usize {
        let n = out.len();
        if !self.primed {
            // Start with just enough that the surplus, lowest right before the
            // writer's next chunk, stays at the target.
            let start = n + self.target + self.max_push.saturating_sub(n);
            if self.buf.len() >= start {
                let extra = self.buf.len() - start;
                self.buf.drain(..extra);
                self.primed = true;
                self.reset_window();
            } else {
                out.fill(0.0);
                return 0;
            }
        }
        if self.buf.len() < n {
            let have = self.buf.len();
            for (o, s) in out.iter_mut().zip(self.buf.drain(..)) {
                *o = s;
            }
            out[have..].fill(0.0);
            self.stats.underruns += 1;
            self.primed = false;
            self.reset_window();
            return have;
        }

        let surplus = self.buf.len() - n;
        if surplus > self.target + self.max_excess {
            let cut = surplus - self.target;
            self.buf.drain(..cut);
            self.stats.trimmed += cut as u64;
            self.reset_window();
        }
        let surplus = self.buf.len() - n;
        self.window_min = self.window_min.min(surplus);
        self.pulled += n;
        self.since_slip += n;
        if self.pulled >= self.window {
            let min = self.window_min;
            if min > self.target + self.tolerance {
                self.pending = (min - self.target) as i64;
            } else if min + self.tolerance < self.target {
                self.pending = -((self.target - min) as i64);
            }
            self.pulled = 0;
            self.window_min = usize::MAX;
        }
        // At most one slip per 10 ms of audio (about 2 000 ppm), however small
        // the device's periods are: more would be heard as a pitch change.
        let may_slip = self.since_slip >= 480;

        if may_slip && self.pending > 0 && n >= 2 && self.buf.len() > n {
            self.since_slip = 0;
            // Drop one sample in the middle of this chunk: blend it into its neighbour.
            let mid = n / 2;
            for (i, o) in out.iter_mut().enumerate() {
                let Some(s) = self.buf.pop_front() else { break };
                *o = s;
                if i == mid {
                    if let Some(next) = self.buf.pop_front() {
                        *o = 0.5 * (s + next);
                    }
                }
            }
            self.pending -= 1;
            self.stats.dropped += 1;
        } else if may_slip && self.pending < 0 && n >= 2 {
            self.since_slip = 0;
            // Repeat one sample: take n - 1 and insert a midpoint.
            let mid = n / 2;
            let mut i = 0;
            while i < n {
                let s = self.buf.pop_front().unwrap_or(0.0);
                out[i] = s;
                if i + 1 == mid {
                    let next = self.buf.front().copied().unwrap_or(s);
                    out[i + 1] = 0.5 * (s + next);
                    i += 1;
                }
                i += 1;
            }
            self.pending += 1;
            self.stats.inserted += 1;
        } else {
            for (o, s) in out.iter_mut().zip(self.buf.drain(..n)) {
                *o = s;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a writer of `push` samples per step against a reader of `pull` samples
    /// per step where the reader's clock is off by `ppm`; returns the buffer.
    fn run(ppm: f64, seconds: f64) -> (DriftBuffer, Vec<usize>) {
        let mut b = DriftBuffer::new(480, 2_880, 24_000);
        let mut levels = Vec::new();
        let mut out = vec![0f32; 480];
        // Writer: 960 samples every 20 ms of its clock. Reader: 480 every 10 ms of
        // its clock, which runs `ppm` fast.
        let mut t_writer = 0.0f64;
        let mut t_reader = 0.0f64;
        let reader_period = 0.010 / (1.0 + ppm * 1e-6);
        let mut x = 0u64;
        while t_reader < seconds {
            while t_writer <= t_reader {
                let chunk: Vec<f32> = (0..960)
                    .map(|_| {
                        x += 1;
                        (x as f32 * 0.001).sin()
                    })
                    .collect();
                b.push(&chunk);
                t_writer += 0.020;
            }
            b.pull(&mut out);
            levels.push(b.len());
            t_reader += reader_period;
        }
        (b, levels)
    }

    #[test]
    fn level_stays_bounded_when_the_reader_clock_is_fast() {
        let (b, levels) = run(500.0, 120.0);
        let late = &levels[levels.len() - 1000..];
        assert!(
            late.iter().all(|&l| l < 480 * 5),
            "a fast reader must not drain the buffer into repeated underruns: {late:?}"
        );
        assert!(
            b.stats().underruns <= 1,
            "drift of 500 ppm is corrected by inserting samples, not by underruns: {:?}",
            b.stats()
        );
        assert!(b.stats().inserted > 1_000, "{:?}", b.stats());
    }

    #[test]
    fn level_stays_bounded_when_the_reader_clock_is_slow() {
        let (b, levels) = run(-500.0, 120.0);
        let max_late = *levels[levels.len() - 1000..].iter().max().unwrap();
        assert!(
            max_late < 480 * 2 + 960 + 200,
            "a slow reader must not let latency creep up: level {max_late}"
        );
        assert!(b.stats().dropped > 1_000, "{:?}", b.stats());
        assert_eq!(b.stats().underruns, 0, "{:?}", b.stats());
    }

    #[test]
    fn a_large_excess_is_cut_at_once_and_an_empty_buffer_reprimes() {
        let mut b = DriftBuffer::new(100, 500, 1_000);
        for _ in 0..50 {
            b.push(&[0.5; 100]);
        }
        let mut out = vec![0f32; 100];
        assert_eq!(b.pull(&mut out), 100);
        assert!(
            b.len() <= 100 + 24,
            "a burst far above the target is cut back to it, not slowly drained: {}",
            b.len()
        );
        while b.len() >= 100 {
            b.pull(&mut out);
        }
        b.pull(&mut out);
        assert!(b.stats().underruns >= 1);
        b.push(&[1.0; 50]);
        assert_eq!(
            b.pull(&mut out),
            0,
            "after an underrun the reader hears silence until the buffer is primed again"
        );
        assert!(out.iter().all(|&s| s == 0.0));
    }
}
