//! DTMF as RFC 4733 telephone events: payload coding, the sender's packet
//! schedule and the receiver's de-duplication.
//!
//! A digit is sent as a sequence of RTP packets with the negotiated
//! `telephone-event` payload type, on the audio stream's SSRC and sequence
//! numbers, all carrying the RTP timestamp of the event's start:
//!
//! * every 20 ms a packet with the growing duration, the first with the marker bit;
//! * after [`TONE_TICKS`] × 20 ms (100 ms) the end packet (E bit), sent three
//!   times in consecutive 20 ms slots, as RFC 4733 §2.5.1.4 recommends;
//! * then [`GAP_TICKS`] × 20 ms of ordinary audio before the next digit.
//!
//! No audio packets are sent while an event is being sent.

/// 20 ms slots during which the tone of one digit lasts (100 ms).
pub const TONE_TICKS: u32 = 5;
/// How many times the end packet is sent.
pub const END_REPEATS: u32 = 3;
/// 20 ms slots of ordinary audio between two digits (60 ms; with the end
/// retransmissions, about 100 ms between tones).
pub const GAP_TICKS: u32 = 3;
/// The volume field we send: -10 dBm0.
const VOLUME: u8 = 10;

/// The RFC 4733 event code of a DTMF digit: `0`-`9`, `*` (10), `#` (11), `A`-`D` (12-15).
pub fn dtmf_event_code(digit: char) -> Option<u8> {
    match digit.to_ascii_uppercase() {
        d @ '0'..='9' => Some(d as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        d @ 'A'..='D' => Some(d as u8 - b'A' + 12),
        _ => None,
    }
}

/// The DTMF digit of an RFC 4733 event code (0-15); other events give `None`.
pub fn dtmf_digit(code: u8) -> Option<char> {
    match code {
        0..=9 => Some(char::from(b'0' + code)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + code - 12)),
        _ => None,
    }
}

/// One RFC 4733 telephone-event payload (4 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// The event code (see [`dtmf_event_code`]).
    pub event: u8,
    /// The E bit: this packet ends the event.
    pub end: bool,
    /// The power level, 0 to 63 as -dBm0.
    pub volume: u8,
    /// The duration so far, in units of the telephone-event clock.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Parses a payload; `None` if it is shorter than 4 bytes.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let [event, flags, d0, d1, ..] = *payload else {
            return None;
        };
        Some(Self {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3F,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }

    /// The 4-byte payload.
    pub fn to_bytes(self) -> [u8; 4] {
        let flags = (if self.end { 0x80 } else { 0 }) | (self.volume & 0x3F);
        let [d0, d1] = self.duration.to_be_bytes();
        [self.event, flags, d0, d1]
    }
}

/// What the sender does in one 20 ms slot while a DTMF string is being played.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DtmfTick {
    /// Send this event packet instead of audio.
    Event {
        payload: TelephoneEvent,
        timestamp: u32,
        marker: bool,
    },
    /// Send ordinary audio in this slot (the gap between digits).
    Audio,
    /// The string is finished; this slot is ordinary audio.
    Done,
}

/// The sender's schedule for a string of digits.
#[derive(Debug)]
pub(crate) struct DtmfPlayer {
    events: Vec<u8>,
    index: usize,
    tick: u32,
    start_ts: u32,
    /// Telephone-event clock units per 20 ms slot.
    units_per_tick: u32,
}

impl DtmfPlayer {
    /// `events` are event codes; `event_clock_rate` is the negotiated
    /// telephone-event clock (8000 or 48000).
    pub(crate) fn new(events: Vec<u8>, event_clock_rate: u32) -> Self {
        Self {
            events,
            index: 0,
            tick: 0,
            start_ts: 0,
            units_per_tick: event_clock_rate / 50,
        }
    }

    /// Advances one 20 ms slot; `audio_ts` is the stream's current RTP timestamp.
    pub(crate) fn tick(&mut self, audio_ts: u32) -> DtmfTick {
        let Some(&event) = self.events.get(self.index) else {
            return DtmfTick::Done;
        };
        let tick = self.tick;
        if tick == 0 {
            self.start_ts = audio_ts;
        }
        self.tick += 1;
        let out = if tick < TONE_TICKS + END_REPEATS - 1 {
            let elapsed = (tick + 1).min(TONE_TICKS) * self.units_per_tick;
            DtmfTick::Event {
                payload: TelephoneEvent {
                    event,
                    end: tick + 1 >= TONE_TICKS,
                    volume: VOLUME,
                    duration: u16::try_from(elapsed).unwrap_or(u16::MAX),
                },
                timestamp: self.start_ts,
                marker: tick == 0,
            }
        } else {
            DtmfTick::Audio
        };
        if self.tick >= TONE_TICKS + END_REPEATS - 1 + GAP_TICKS {
            self.index += 1;
            self.tick = 0;
        }
        out
    }
}

/// The receiver's side: reports each event once, when its first end packet
/// arrives, ignoring the retransmitted end packets (same RTP timestamp).
#[derive(Debug, Default)]
pub(crate) struct DtmfReceiver {
    /// Start timestamps of the last few reported events.
    recent: [Option<u32>; 4],
    next: usize,
}

impl DtmfReceiver {
    /// Handles one telephone-event packet; returns the digit when an event ends.
    pub(crate) fn on_packet(&mut self, timestamp: u32, payload: &[u8]) -> Option<char> {
        let event = TelephoneEvent::parse(payload)?;
        if !event.end || self.recent.contains(&Some(timestamp)) {
            return None;
        }
        self.recent[self.next] = Some(timestamp);
        self.next = (self.next + 1) % self.recent.len();
        dtmf_digit(event.event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digit_codes_round_trip() {
        for d in "0123456789*#ABCD".chars() {
            let code = dtmf_event_code(d).expect("valid digit");
            assert_eq!(dtmf_digit(code), Some(d));
        }
        assert_eq!(
            dtmf_event_code('a'),
            Some(12),
            "letters are case-insensitive"
        );
        assert_eq!(dtmf_event_code('E'), None);
        assert_eq!(dtmf_event_code(' '), None);
        assert_eq!(dtmf_digit(16), None, "flash is not a digit");
    }

    #[test]
    fn payload_round_trips() {
        let e = TelephoneEvent {
            event: 11,
            end: true,
            volume: 10,
            duration: 800,
        };
        assert_eq!(e.to_bytes(), [11, 0x8A, 0x03, 0x20]);
        assert_eq!(TelephoneEvent::parse(&e.to_bytes()), Some(e));
        assert_eq!(TelephoneEvent::parse(&[1, 2, 3]), None);
    }

    #[test]
    fn player_sends_start_updates_three_ends_then_a_gap() {
        let mut player = DtmfPlayer::new(vec![1, 9], 8000);
        let mut ts = 1000u32;
        let mut ticks = Vec::new();
        loop {
            let t = player.tick(ts);
            ts += 960;
            ticks.push(t);
            if t == DtmfTick::Done {
                break;
            }
        }
        let per_digit = (TONE_TICKS + END_REPEATS - 1 + GAP_TICKS) as usize;
        assert_eq!(ticks.len(), 2 * per_digit + 1);
        let events: Vec<_> = ticks[..per_digit]
            .iter()
            .filter_map(|t| match *t {
                DtmfTick::Event {
                    payload,
                    timestamp,
                    marker,
                } => Some((payload, timestamp, marker)),
                _ => None,
            })
            .collect();
        assert_eq!(
            events.len(),
            7,
            "5 tone slots, the last of them the first end, + 2 repeats"
        );
        assert!(
            events[0].2,
            "the first packet of an event carries the marker bit"
        );
        assert!(events[1..].iter().all(|e| !e.2));
        assert!(
            events.iter().all(|e| e.1 == 1000),
            "one timestamp per event"
        );
        let durations: Vec<u16> = events.iter().map(|e| e.0.duration).collect();
        assert_eq!(durations, [160, 320, 480, 640, 800, 800, 800]);
        let ends = events.iter().filter(|e| e.0.end).count();
        assert_eq!(ends, 3, "the end packet is sent three times");
        assert_eq!(ticks[7..per_digit], [DtmfTick::Audio; 3]);
        match ticks[per_digit] {
            DtmfTick::Event {
                payload, timestamp, ..
            } => {
                assert_eq!(payload.event, 9);
                assert_eq!(timestamp, 1000 + 960 * per_digit as u32);
            }
            other => panic!("second digit must start right after the gap, got {other:?}"),
        }
    }

    #[test]
    fn receiver_reports_each_event_once() {
        let mut rx = DtmfReceiver::default();
        let mut player = DtmfPlayer::new(vec![1, 5, 5, 11], 48_000);
        let mut digits = String::new();
        let mut ts = 0u32;
        loop {
            match player.tick(ts) {
                DtmfTick::Event {
                    payload, timestamp, ..
                } => {
                    if let Some(d) = rx.on_packet(timestamp, &payload.to_bytes()) {
                        digits.push(d);
                    }
                }
                DtmfTick::Audio => {}
                DtmfTick::Done => break,
            }
            ts = ts.wrapping_add(960);
        }
        assert_eq!(
            digits, "155#",
            "repeated digits are distinct events; end retransmissions are not"
        );
    }
}
