//! Small, line-based SDP helpers around what the WebRTC engine produces and
//! accepts: media direction, codec lists, and a few interop fix-ups.

use std::fmt;

use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;

/// The direction of a media stream, from the point of view of the SDP's author
/// (RFC 3264 §5.1): `a=sendrecv`, `a=sendonly`, `a=recvonly`, `a=inactive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    /// Sends and receives (the default when no attribute is present).
    #[default]
    SendRecv,
    /// Sends only; used to put the other side on hold.
    SendOnly,
    /// Receives only; the answer to a `sendonly` offer.
    RecvOnly,
    /// Neither sends nor receives.
    Inactive,
}

impl Direction {
    /// Whether the author of the SDP sends media.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the author of the SDP receives media.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The same stream seen from the other side (`sendonly` ⇄ `recvonly`).
    pub fn reverse(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            other => other,
        }
    }

    /// The SDP attribute name, e.g. `sendonly`.
    pub fn as_attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Parses an SDP attribute name such as `recvonly`.
    pub fn from_attribute(attribute: &str) -> Option<Direction> {
        match attribute.trim() {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    pub(crate) fn to_rtc(self) -> RTCRtpTransceiverDirection {
        match self {
            Direction::SendRecv => RTCRtpTransceiverDirection::Sendrecv,
            Direction::SendOnly => RTCRtpTransceiverDirection::Sendonly,
            Direction::RecvOnly => RTCRtpTransceiverDirection::Recvonly,
            Direction::Inactive => RTCRtpTransceiverDirection::Inactive,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_attribute())
    }
}

/// The direction of the (first) audio stream in `sdp`: its media-level
/// direction attribute, else the session-level one, else `sendrecv`.
/// Never fails: unparsable input counts as `sendrecv`.
pub fn sdp_direction(sdp: &str) -> Direction {
    let parsed = Sdp::parse(sdp);
    parsed
        .audio_section()
        .and_then(|m| direction_in(&m.lines))
        .or_else(|| direction_in(&parsed.session))
        .unwrap_or_default()
}

/// One codec offered in an audio `m=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpCodec {
    /// The RTP payload type.
    pub payload_type: u8,
    /// The encoding name as written (`opus`, `PCMU`, `telephone-event`).
    pub name: String,
    /// The clock rate in Hz.
    pub clock_rate: u32,
}

/// The codecs of the (first) audio stream in `sdp`, in preference order. Static
/// payload types without an `a=rtpmap` (e.g. `0` for PCMU) are filled in from
/// RFC 3551; unknown dynamic ones are skipped.
pub fn audio_codecs(sdp: &str) -> Vec<SdpCodec> {
    let parsed = Sdp::parse(sdp);
    let Some(section) = parsed.audio_section() else {
        return Vec::new();
    };
    section
        .formats()
        .into_iter()
        .filter_map(|pt| {
            let (name, clock_rate) = match rtpmap(&section.lines, pt) {
                Some((name, rate)) => (name, rate),
                None => {
                    let (name, rate) = static_payload_type(pt)?;
                    (name.to_owned(), rate)
                }
            };
            Some(SdpCodec {
                payload_type: pt,
                name,
                clock_rate,
            })
        })
        .collect()
}

/// Whether `sdp` has what DTLS-SRTP with ICE needs: ICE credentials and a DTLS
/// fingerprint (at session or media level). Plain RTP/AVP peers have neither.
pub(crate) fn has_ice_and_dtls(sdp: &str) -> (bool, bool) {
    let lines = sdp.lines().map(str::trim);
    let (mut ice, mut dtls) = (false, false);
    for line in lines {
        ice |= line.starts_with("a=ice-ufrag:");
        dtls |= line.starts_with("a=fingerprint:");
    }
    (ice, dtls)
}

/// Rewrites a remote SDP so that the WebRTC engine reads it the way SIP peers
/// mean it:
///
/// * a session-level direction attribute is copied into every media section that
///   has none (the engine only looks at media level);
/// * static payload types listed without `a=rtpmap` get one from RFC 3551, and
///   unknown payload types without one are dropped from the `m=` line (the engine
///   would otherwise reject the whole description).
pub(crate) fn normalize_remote(sdp: &str) -> String {
    let mut parsed = Sdp::parse(sdp);
    let session_direction = direction_in(&parsed.session);
    for section in &mut parsed.media {
        if let Some(dir) = session_direction {
            if direction_in(&section.lines).is_none() {
                section.lines.push(format!("a={}", dir.as_attribute()));
            }
        }
        let formats = section.formats();
        let mut kept = Vec::with_capacity(formats.len());
        for pt in formats {
            if rtpmap(&section.lines, pt).is_some() {
                kept.push(pt);
            } else if let Some((name, rate)) = static_payload_type(pt) {
                section.lines.push(format!("a=rtpmap:{pt} {name}/{rate}"));
                kept.push(pt);
            }
        }
        section.set_formats(&kept);
    }
    parsed.to_string()
}

/// Puts the first RTP host candidate into the `c=` line and the `m=` port of
/// each media section (RFC 8839 §4.2.1.2 "default candidate"), so that peers and
/// middleboxes that look at `c=`/`m=` see a real address instead of `0.0.0.0:9`.
pub(crate) fn with_default_candidate(sdp: &str) -> String {
    let mut parsed = Sdp::parse(sdp);
    for section in &mut parsed.media {
        let Some((ip, port)) = section.lines.iter().find_map(|l| rtp_candidate(l)) else {
            continue;
        };
        let family = if ip.contains(':') { "IP6" } else { "IP4" };
        let connection = format!("c=IN {family} {ip}");
        match section.lines.iter_mut().find(|l| l.starts_with("c=")) {
            Some(line) => *line = connection,
            None => section.lines.insert(0, connection),
        }
        section.set_port(port);
    }
    parsed.to_string()
}

/// `(address, port)` of an `a=candidate` line for component 1 over UDP.
fn rtp_candidate(line: &str) -> Option<(String, u16)> {
    let rest = line.strip_prefix("a=candidate:")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // foundation component transport priority address port "typ" type ...
    if fields.len() < 8 || fields[1] != "1" || !fields[2].eq_ignore_ascii_case("udp") {
        return None;
    }
    Some((fields[4].to_owned(), fields[5].parse().ok()?))
}

fn direction_in(lines: &[String]) -> Option<Direction> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("a="))
        .find_map(Direction::from_attribute)
}

fn rtpmap(lines: &[String], pt: u8) -> Option<(String, u32)> {
    let prefix = format!("a=rtpmap:{pt} ");
    lines.iter().find_map(|l| {
        let value = l.strip_prefix(&prefix)?;
        let mut parts = value.trim().split('/');
        let name = parts.next()?.to_owned();
        let rate = parts.next()?.parse().ok()?;
        Some((name, rate))
    })
}

/// RFC 3551 static audio payload types that peers commonly send without rtpmap.
fn static_payload_type(pt: u8) -> Option<(&'static str, u32)> {
    Some(match pt {
        0 => ("PCMU", 8000),
        3 => ("GSM", 8000),
        4 => ("G723", 8000),
        8 => ("PCMA", 8000),
        9 => ("G722", 8000),
        13 => ("CN", 8000),
        18 => ("G729", 8000),
        _ => return None,
    })
}

/// An SDP split into session lines and media sections, one line per entry
/// (without line endings).
struct Sdp {
    session: Vec<String>,
    media: Vec<MediaSection>,
}

struct MediaSection {
    /// The `m=` line.
    m_line: String,
    /// The lines after it, up to the next `m=`.
    lines: Vec<String>,
}

impl MediaSection {
    fn is_audio(&self) -> bool {
        self.m_line.starts_with("m=audio ")
    }

    /// The payload types of the `m=` line (`m=<media> <port> <proto> <fmt>...`).
    fn formats(&self) -> Vec<u8> {
        self.m_line
            .split_whitespace()
            .skip(3)
            .filter_map(|f| f.parse().ok())
            .collect()
    }

    fn set_formats(&mut self, formats: &[u8]) {
        let mut fields: Vec<String> = self
            .m_line
            .split_whitespace()
            .take(3)
            .map(str::to_owned)
            .collect();
        if fields.len() < 3 || formats.is_empty() {
            return;
        }
        fields.extend(formats.iter().map(u8::to_string));
        self.m_line = fields.join(" ");
    }

    fn set_port(&mut self, port: u16) {
        let mut fields: Vec<&str> = self.m_line.split_whitespace().collect();
        if fields.len() < 3 || fields[1] == "0" {
            return; // a rejected stream keeps port 0
        }
        let port = port.to_string();
        fields[1] = &port;
        self.m_line = fields.join(" ");
    }
}

impl Sdp {
    fn parse(sdp: &str) -> Self {
        let mut session = Vec::new();
        let mut media: Vec<MediaSection> = Vec::new();
        for line in sdp.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if line.starts_with("m=") {
                media.push(MediaSection {
                    m_line: line.to_owned(),
                    lines: Vec::new(),
                });
            } else if let Some(section) = media.last_mut() {
                section.lines.push(line.to_owned());
            } else {
                session.push(line.to_owned());
            }
        }
        Self { session, media }
    }

    fn audio_section(&self) -> Option<&MediaSection> {
        self.media.iter().find(|m| m.is_audio())
    }
}

impl fmt::Display for Sdp {
    /// Writes the SDP back with CRLF line endings, as RFC 4566 requires.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.session {
            write!(f, "{line}\r\n")?;
        }
        for section in &self.media {
            write!(f, "{}\r\n", section.m_line)?;
            for line in &section.lines {
                write!(f, "{line}\r\n")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
        a=sendonly\r\nm=audio 4000 RTP/AVP 0 8 96 101\r\na=rtpmap:101 telephone-event/8000\r\n\
        a=fmtp:101 0-16\r\n";

    #[test]
    fn direction_defaults_and_levels() {
        assert_eq!(sdp_direction(""), Direction::SendRecv);
        assert_eq!(sdp_direction("garbage\nmore"), Direction::SendRecv);
        assert_eq!(
            sdp_direction(PLAIN),
            Direction::SendOnly,
            "session level applies"
        );
        let media_level = "v=0\r\na=sendonly\r\nm=audio 9 RTP/AVP 0\r\na=inactive\r\n";
        assert_eq!(
            sdp_direction(media_level),
            Direction::Inactive,
            "media level wins"
        );
        let video_first =
            "v=0\r\nm=video 9 RTP/AVP 96\r\na=sendonly\r\nm=audio 9 RTP/AVP 0\r\na=recvonly\r\n";
        assert_eq!(
            sdp_direction(video_first),
            Direction::RecvOnly,
            "the audio stream counts"
        );
    }

    #[test]
    fn direction_helpers() {
        assert!(Direction::SendOnly.sends() && !Direction::SendOnly.receives());
        assert!(!Direction::RecvOnly.sends() && Direction::RecvOnly.receives());
        assert!(!Direction::Inactive.sends() && !Direction::Inactive.receives());
        assert_eq!(Direction::SendOnly.reverse(), Direction::RecvOnly);
        assert_eq!(Direction::Inactive.reverse(), Direction::Inactive);
        for d in [
            Direction::SendRecv,
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ] {
            assert_eq!(Direction::from_attribute(&d.to_string()), Some(d));
        }
    }

    #[test]
    fn codecs_fill_in_static_payload_types() {
        let codecs = audio_codecs(PLAIN);
        let names: Vec<_> = codecs
            .iter()
            .map(|c| (c.payload_type, c.name.as_str()))
            .collect();
        assert_eq!(names, [(0, "PCMU"), (8, "PCMA"), (101, "telephone-event")]);
    }

    #[test]
    fn normalize_moves_direction_and_fixes_rtpmaps() {
        let out = normalize_remote(PLAIN);
        assert!(out.contains("m=audio 4000 RTP/AVP 0 8 101\r\n"), "{out}");
        assert!(out.contains("a=rtpmap:0 PCMU/8000\r\n"));
        assert!(out.contains("a=rtpmap:8 PCMA/8000\r\n"));
        let media = out.split("m=audio").nth(1).expect("media section");
        assert!(
            media.contains("a=sendonly"),
            "direction copied to media level"
        );
        assert!(out.ends_with("\r\n"));
    }

    #[test]
    fn default_candidate_goes_into_c_and_m_lines() {
        let sdp = "v=0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\n\
            c=IN IP4 0.0.0.0\r\na=candidate:1 2 udp 2130706431 127.0.0.1 5001 typ host\r\n\
            a=candidate:2 1 udp 2130706431 127.0.0.1 5000 typ host\r\na=end-of-candidates\r\n";
        let out = with_default_candidate(sdp);
        assert!(
            out.contains("m=audio 5000 UDP/TLS/RTP/SAVPF 111 0\r\n"),
            "{out}"
        );
        assert!(out.contains("c=IN IP4 127.0.0.1\r\n"), "{out}");
        assert!(!out.contains("0.0.0.0"));
    }

    #[test]
    fn ice_and_dtls_detection() {
        assert_eq!(has_ice_and_dtls(PLAIN), (false, false));
        assert_eq!(
            has_ice_and_dtls("a=ice-ufrag:x\r\na=fingerprint:sha-256 AA\r\n"),
            (true, true)
        );
    }
}
