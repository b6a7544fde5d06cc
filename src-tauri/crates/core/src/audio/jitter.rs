//! [`JitterBuffer`]: an adaptive playout buffer for one incoming RTP stream.
//!
//! Packets go in as they arrive ([`push`](JitterBuffer::push)), in any order;
//! the playout clock takes one 20 ms frame out per tick
//! ([`pop`](JitterBuffer::pop)) and gets the packet due, a request to conceal a
//! missing one, or nothing when the stream is paused.
//!
//! # How the delay adapts
//!
//! For each packet the buffer measures its *transit* (arrival time minus RTP
//! time). The smallest transit of the last few seconds is the network's base
//! delay; how much later than that packets arrive is their jitter. The target
//! delay is the 95th percentile of that jitter over the window plus a small
//! guard, between [`JitterConfig::min_delay`] and [`JitterConfig::max_delay`].
//!
//! At each pop the buffer knows the *margin* of the frame due: how long after its
//! nominal arrival (RTP time + base delay) it is being played. It steers that
//! margin into `[target, target + one frame + hysteresis]`:
//!
//! * too little margin and the packet is missing: conceal **without** advancing
//!   (the delay grows by one frame — jitter went up);
//! * too much margin for half a second: drop one frame (the delay shrinks —
//!   jitter went down, or the sender's clock runs faster than ours).
//!
//! So clock drift between the sender and our playout clock is absorbed here, by
//! whole frames, rarely; drift between our playout clock and the sound card is
//! absorbed downstream by sample slips ([`DriftBuffer`](super::DriftBuffer)).
//!
//! Late packets (their slot passed) and duplicates are dropped; gaps are
//! reported as [`Playout::Conceal`] with the next packet (for Opus FEC); after
//! [`JitterConfig::max_conceal`] frames with nothing buffered the stream counts as
//! paused (hold, a silent sender) and the buffer re-primes on the next packet.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// How a [`JitterBuffer`] behaves. The defaults suit 20 ms voice frames.
#[derive(Debug, Clone, PartialEq)]
pub struct JitterConfig {
    /// The frame duration (one pop).
    pub frame: Duration,
    /// The smallest target delay (beyond the base network delay).
    pub min_delay: Duration,
    /// The largest target delay.
    pub max_delay: Duration,
    /// Added to the measured jitter percentile.
    pub guard: Duration,
    /// How much transit history the jitter estimate looks at.
    pub window: Duration,
    /// Frames concealed with nothing buffered before the stream counts as paused.
    pub max_conceal: u32,
}

impl Default for JitterConfig {
    fn default() -> Self {
        JitterConfig {
            frame: Duration::from_millis(20),
            min_delay: Duration::ZERO,
            max_delay: Duration::from_millis(300),
            guard: Duration::from_millis(3),
            window: Duration::from_secs(4),
            max_conceal: 5,
        }
    }
}

/// What the playout clock should do for this tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout<T> {
    /// Decode and play this packet.
    Frame(T),
    /// The frame is missing: conceal it. `next` is the following packet if it is
    /// already here (Opus can rebuild the missing frame from its FEC data).
    Conceal {
        /// The next packet, if buffered.
        next: Option<T>,
    },
    /// Nothing to play: not started yet, or the stream is paused.
    Idle,
}

/// What happened to a pushed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Buffered; `started` is true if the buffer was idle and this packet starts
    /// a new talkspurt (the playout clock may want to re-align its phase).
    Buffered {
        /// The buffer was idle before.
        started: bool,
    },
    /// Its slot was already played or concealed.
    Late,
    /// Already buffered.
    Duplicate,
}

/// Counters and the current delay, for logs, tests and the call-quality UI.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct JitterStats {
    /// Packets accepted.
    pub received: u64,
    /// Frames played from packets.
    pub played: u64,
    /// Frames concealed (lost, late or stretched).
    pub concealed: u64,
    /// Packets that arrived after their slot.
    pub late: u64,
    /// Duplicate packets.
    pub duplicates: u64,
    /// Frames inserted to grow the delay.
    pub stretched: u64,
    /// Frames dropped to shrink the delay.
    pub dropped: u64,
    /// The current target delay above the base delay, in milliseconds.
    pub target_ms: u32,
}

struct Entry<T> {
    /// RTP time in seconds (unwrapped, from the first packet).
    media: f64,
    payload: T,
}

/// The adaptive jitter buffer (see the module docs).
pub struct JitterBuffer<T> {
    cfg: JitterConfig,
    packets: BTreeMap<i64, Entry<T>>,
    /// The highest extended sequence number seen.
    highest: Option<i64>,
    /// RTP timestamp unwrapping: last raw ts, its unwrapped value, clock rate.
    last_ts: Option<(u32, i64, u32)>,
    epoch: Option<Instant>,
    /// (arrival seconds, transit seconds) of recent packets.
    transits: VecDeque<(f64, f64)>,
    /// The next sequence number to play, while playing.
    next: Option<i64>,
    /// Media time of the last frame played or concealed.
    last_media: f64,
    empty_run: u32,
    over_run: u32,
    stats: JitterStats,
}

impl<T: Clone> JitterBuffer<T> {
    /// An empty buffer.
    pub fn new(cfg: JitterConfig) -> Self {
        JitterBuffer {
            cfg,
            packets: BTreeMap::new(),
            highest: None,
            last_ts: None,
            epoch: None,
            transits: VecDeque::new(),
            next: None,
            last_media: 0.0,
            empty_run: 0,
            over_run: 0,
            stats: JitterStats::default(),
        }
    }

    /// Counters and the current target delay.
    pub fn stats(&self) -> JitterStats {
        let mut s = self.stats;
        s.target_ms = self.target_delay().as_millis() as u32;
        s
    }

    /// Whether a talkspurt is being played (false while priming or paused).
    pub fn is_playing(&self) -> bool {
        self.next.is_some()
    }

    /// Packets buffered.
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    /// Whether no packet is buffered.
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// Forgets every packet and the playout position (for example on hold); the
    /// delay estimate is kept.
    pub fn reset(&mut self) {
        self.packets.clear();
        self.next = None;
        self.empty_run = 0;
        self.over_run = 0;
    }

    /// Adds a packet: RTP sequence number, timestamp and clock rate, payload and
    /// arrival time.
    pub fn push(
        &mut self,
        seq: u16,
        ts: u32,
        clock_rate: u32,
        payload: T,
        arrival: Instant,
    ) -> PushOutcome {
        let ext = match self.highest {
            None => (1i64 << 32) + i64::from(seq),
            Some(h) => h + i64::from(seq.wrapping_sub(h as u16) as i16),
        };
        if let Some(next) = self.next {
            if ext < next {
                self.stats.late += 1;
                // Still a valid transit sample: it tells us the jitter is larger.
                if let Some(media) = self.unwrap_ts(ts, clock_rate) {
                    self.note_transit(media, arrival);
                }
                return PushOutcome::Late;
            }
        }
        if self.packets.contains_key(&ext) {
            self.stats.duplicates += 1;
            return PushOutcome::Duplicate;
        }
        let Some(media) = self.unwrap_ts(ts, clock_rate) else {
            return PushOutcome::Late;
        };
        self.highest = Some(self.highest.map_or(ext, |h| h.max(ext)));
        self.note_transit(media, arrival);
        let started = self.next.is_none() && self.packets.is_empty();
        self.packets.insert(ext, Entry { media, payload });
        self.stats.received += 1;
        PushOutcome::Buffered { started }
    }

    /// Unwraps an RTP timestamp into seconds since the first packet.
    fn unwrap_ts(&mut self, ts: u32, clock_rate: u32) -> Option<f64> {
        let clock_rate = clock_rate.max(1);
        let unwrapped = match self.last_ts {
            Some((raw, value, rate)) if rate == clock_rate => {
                value + i64::from(ts.wrapping_sub(raw) as i32)
            }
            Some((_, value, rate)) => {
                // A codec change: rescale the position, restart unwrapping.
                value * i64::from(clock_rate) / i64::from(rate)
            }
            None => 0,
        };
        match self.last_ts {
            Some((_, value, rate)) if rate == clock_rate && unwrapped < value => {}
            _ => self.last_ts = Some((ts, unwrapped, clock_rate)),
        }
        Some(unwrapped as f64 / f64::from(clock_rate))
    }

    fn secs(&mut self, t: Instant) -> f64 {
        let epoch = *self.epoch.get_or_insert(t);
        if t >= epoch {
            t.duration_since(epoch).as_secs_f64()
        } else {
            -epoch.duration_since(t).as_secs_f64()
        }
    }

    fn note_transit(&mut self, media: f64, arrival: Instant) {
        let a = self.secs(arrival);
        self.transits.push_back((a, a - media));
        let horizon = a - self.cfg.window.as_secs_f64();
        while self.transits.front().is_some_and(|&(t, _)| t < horizon) {
            self.transits.pop_front();
        }
        while self.transits.len() > 1_000 {
            self.transits.pop_front();
        }
    }

    /// The base network delay: the smallest recent transit.
    fn base(&self) -> f64 {
        self.transits
            .iter()
            .map(|&(_, t)| t)
            .fold(f64::INFINITY, f64::min)
    }

    /// The target delay above the base delay.
    pub fn target_delay(&self) -> Duration {
        if self.transits.is_empty() {
            return self.cfg.min_delay.max(self.cfg.guard);
        }
        let base = self.base();
        let mut jitter: Vec<f64> = self.transits.iter().map(|&(_, t)| t - base).collect();
        jitter.sort_by(f64::total_cmp);
        let idx = ((jitter.len() as f64 * 0.95).ceil() as usize).clamp(1, jitter.len()) - 1;
        let secs = jitter[idx] + self.cfg.guard.as_secs_f64();
        Duration::from_secs_f64(secs.max(0.0)).clamp(self.cfg.min_delay, self.cfg.max_delay)
    }

    /// The playout clock's tick: what to play now.
    pub fn pop(&mut self, now: Instant) -> Playout<T> {
        let now_s = self.secs(now);
        let target = self.target_delay().as_secs_f64();
        let base = self.base();
        let frame = self.cfg.frame.as_secs_f64();

        let Some(next) = self.next else {
            // Priming: start once the first packet has waited out the target delay.
            let Some((&first, entry)) = self.packets.iter().next() else {
                return Playout::Idle;
            };
            if now_s - (entry.media + base) + 1e-4 < target {
                return Playout::Idle;
            }
            let Some(entry) = self.packets.remove(&first) else {
                return Playout::Idle;
            };
            self.next = Some(first + 1);
            self.last_media = entry.media;
            self.empty_run = 0;
            self.over_run = 0;
            self.stats.played += 1;
            return Playout::Frame(entry.payload);
        };

        // Late leftovers below the cursor cannot be played.
        while let Some((&k, _)) = self.packets.iter().next() {
            if k >= next {
                break;
            }
            self.packets.remove(&k);
        }

        let due_media = self
            .packets
            .get(&next)
            .map_or(self.last_media + frame, |e| e.media);
        let margin = now_s - (due_media + base);

        if let Some(entry) = self.packets.remove(&next) {
            self.empty_run = 0;
            // Shrink the delay by a frame when the margin stayed high for ~0.5 s.
            if margin > target + frame + 0.005 && self.packets.contains_key(&(next + 1)) {
                self.over_run += 1;
            } else {
                self.over_run = 0;
            }
            if self.over_run >= 25 {
                self.over_run = 0;
                self.stats.dropped += 1;
                if let Some(following) = self.packets.remove(&(next + 1)) {
                    self.next = Some(next + 2);
                    self.last_media = following.media;
                    self.stats.played += 1;
                    return Playout::Frame(following.payload);
                }
            }
            self.next = Some(next + 1);
            self.last_media = entry.media;
            self.stats.played += 1;
            return Playout::Frame(entry.payload);
        }

        self.over_run = 0;
        if self.packets.is_empty() {
            self.empty_run += 1;
            if self.empty_run > self.cfg.max_conceal {
                // The sender paused (hold, DTX) or went away: re-prime on its return.
                self.next = None;
                self.empty_run = 0;
                return Playout::Idle;
            }
        }
        self.stats.concealed += 1;
        if margin < target - 0.002 {
            // The packet is probably just late: wait a frame longer (stretch).
            self.stats.stretched += 1;
            return Playout::Conceal {
                next: self.packets.get(&next).map(|e| e.payload.clone()),
            };
        }
        // Lost: conceal it and move on.
        self.next = Some(next + 1);
        self.last_media = due_media;
        Playout::Conceal {
            next: self.packets.get(&(next + 1)).map(|e| e.payload.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: Duration = Duration::from_millis(20);

    /// Plays a schedule of (seq, arrival offset) packets against a 20 ms playout
    /// clock starting at `t0` with phase `phase`; returns what was played per tick.
    fn simulate(
        arrivals: &[(u16, Duration)],
        ticks: usize,
        phase: Duration,
        sender_rate: f64,
    ) -> (Vec<Playout<u16>>, JitterBuffer<u16>) {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let mut sorted: Vec<(u16, Duration)> = arrivals.to_vec();
        sorted.sort_by_key(|&(_, a)| a);
        let mut out = Vec::new();
        let mut i = 0;
        for tick in 0..ticks {
            let now = t0 + phase + FRAME * tick as u32;
            while i < sorted.len() && t0 + sorted[i].1 <= now {
                let (seq, at) = sorted[i];
                let ts = (f64::from(seq) * 960.0 * sender_rate) as u32;
                jb.push(seq, ts, 48_000, seq, t0 + at);
                i += 1;
            }
            out.push(jb.pop(now));
        }
        (out, jb)
    }

    fn played(out: &[Playout<u16>]) -> Vec<u16> {
        out.iter()
            .filter_map(|p| match p {
                Playout::Frame(s) => Some(*s),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn reordered_packets_are_played_in_order() {
        // Packets swap pairwise (1 before 0, 3 before 2, ...) with 5 ms of jitter.
        let arrivals: Vec<(u16, Duration)> = (0..100u16)
            .map(|s| {
                let partner = s ^ 1;
                (s, FRAME * u32::from(partner) + Duration::from_millis(5))
            })
            .collect();
        let (out, jb) = simulate(&arrivals, 130, Duration::from_millis(1), 1.0);
        let seqs = played(&out);
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        assert_eq!(
            seqs, sorted,
            "playout order is sequence order, not arrival order"
        );
        assert!(
            seqs.len() >= 96,
            "reordering within the target delay loses (almost) nothing: played {} ({:?})",
            seqs.len(),
            jb.stats()
        );
    }

    #[test]
    fn lost_packets_are_concealed_once_and_playout_continues() {
        let arrivals: Vec<(u16, Duration)> = (0..100u16)
            .filter(|s| s % 10 != 5)
            .map(|s| (s, FRAME * u32::from(s)))
            .collect();
        let (out, jb) = simulate(&arrivals, 110, Duration::from_millis(4), 1.0);
        let seqs = played(&out);
        assert_eq!(seqs.len(), 90, "every packet that arrived is played");
        let conceals = out
            .iter()
            .filter(|p| matches!(p, Playout::Conceal { .. }))
            .count();
        assert!(
            (10..=16).contains(&conceals),
            "each of the 10 lost packets is concealed (plus the tail), got {conceals}"
        );
        assert_eq!(jb.stats().late, 0);
    }

    #[test]
    fn the_delay_grows_with_jitter_and_shrinks_after_it() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let mut now = t0;
        // 5 s of heavy jitter (0..60 ms), then 10 s of none.
        let mut seq = 0u16;
        let mut arrivals = Vec::new();
        for i in 0..750u32 {
            let jitter = if i < 250 { (i * 37 % 61) as u64 } else { 0 };
            arrivals.push((seq, FRAME * i + Duration::from_millis(jitter)));
            seq = seq.wrapping_add(1);
        }
        arrivals.sort_by_key(|&(_, a)| a);
        let mut k = 0;
        let mut target_during = 0;
        let mut late_after_warmup = 0;
        for tick in 0..760u32 {
            now = t0 + FRAME * tick + Duration::from_millis(2);
            while k < arrivals.len() && t0 + arrivals[k].1 <= now {
                let (s, at) = arrivals[k];
                if let PushOutcome::Late = jb.push(s, u32::from(s) * 960, 48_000, s, t0 + at) {
                    if tick > 100 && tick < 250 {
                        late_after_warmup += 1;
                    }
                }
                k += 1;
            }
            jb.pop(now);
            if tick == 240 {
                target_during = jb.stats().target_ms;
            }
        }
        let _ = now;
        assert!(
            target_during >= 50,
            "with 60 ms of jitter the target delay rises to cover it: {target_during} ms"
        );
        assert!(
            late_after_warmup <= 8,
            "once adapted, few packets arrive too late: {late_after_warmup}"
        );
        let after = jb.stats();
        assert!(
            after.target_ms <= 10,
            "when the jitter is gone the target falls back: {after:?}"
        );
        assert!(
            after.dropped >= 1,
            "the delay is actually given back by dropping frames: {after:?}"
        );
    }

    #[test]
    fn a_sender_clock_drifting_either_way_keeps_the_delay_bounded() {
        for &rate in &[1.005f64, 0.995] {
            // The sender's frames are 20 ms of *its* clock: 0.5 % fast or slow
            // (far worse than real crystals, to see many corrections in a minute).
            let arrivals: Vec<(u16, Duration)> = (0..3_000u32)
                .map(|i| {
                    (
                        (i % 65_536) as u16,
                        Duration::from_secs_f64(0.020 * f64::from(i) / rate),
                    )
                })
                .collect();
            let t0 = Instant::now();
            let mut jb = JitterBuffer::new(JitterConfig::default());
            let mut k = 0;
            let mut max_buffered = 0;
            let mut idle_after_start = 0;
            for tick in 0..2_900u32 {
                let now = t0 + FRAME * tick + Duration::from_millis(3);
                while k < arrivals.len() && t0 + arrivals[k].1 <= now {
                    let (s, at) = arrivals[k];
                    jb.push(s, u32::from(s) * 960, 48_000, s, t0 + at);
                    k += 1;
                }
                if matches!(jb.pop(now), Playout::Idle) && tick > 5 {
                    idle_after_start += 1;
                }
                if tick > 100 {
                    max_buffered = max_buffered.max(jb.len());
                }
            }
            assert!(
                max_buffered <= 4,
                "rate {rate}: the buffer must not fill up with a fast sender: {max_buffered} ({:?})",
                jb.stats()
            );
            assert_eq!(
                idle_after_start, 0,
                "rate {rate}: a slow sender never starves playout into a pause"
            );
            let s = jb.stats();
            if rate > 1.0 {
                assert!(
                    s.dropped >= 5,
                    "a fast sender is compensated by drops: {s:?}"
                );
            } else {
                assert!(
                    s.stretched >= 5,
                    "a slow sender is compensated by stretches: {s:?}"
                );
            }
        }
    }

    #[test]
    fn late_and_duplicate_packets_are_refused_and_a_pause_reprimes() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        assert_eq!(
            jb.push(10, 9_600, 48_000, 10, t0),
            PushOutcome::Buffered { started: true }
        );
        assert_eq!(jb.push(10, 9_600, 48_000, 10, t0), PushOutcome::Duplicate);
        assert_eq!(jb.pop(t0 + Duration::from_millis(5)), Playout::Frame(10));
        assert_eq!(
            jb.push(9, 8_640, 48_000, 9, t0 + Duration::from_millis(6)),
            PushOutcome::Late
        );
        let mut t = t0 + Duration::from_millis(25);
        let mut idle = false;
        for _ in 0..10 {
            if jb.pop(t) == Playout::Idle {
                idle = true;
                break;
            }
            t += FRAME;
        }
        assert!(
            idle,
            "a silent sender pauses playout after a few concealed frames"
        );
        assert_eq!(
            jb.push(40, 38_400, 48_000, 40, t),
            PushOutcome::Buffered { started: true },
            "the next talkspurt starts a new priming"
        );
    }
}
