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
    parsed
        .audio_section()
        .map(section_codecs)
        .unwrap_or_default()
}

/// The codecs of one media section, as [`audio_codecs`] reads them.
pub(super) fn section_codecs(section: &MediaSection) -> Vec<SdpCodec> {
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

pub(super) fn direction_in(lines: &[String]) -> Option<Direction> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("a="))
        .find_map(Direction::from_attribute)
}

pub(super) fn rtpmap(lines: &[String], pt: u8) -> Option<(String, u32)> {
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
pub(super) fn static_payload_type(pt: u8) -> Option<(&'static str, u32)> {
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
pub(super) struct Sdp {
    pub(super) session: Vec<String>,
    pub(super) media: Vec<MediaSection>,
}

pub(super) struct MediaSection {
    /// The `m=` line.
    pub(super) m_line: String,
    /// The lines after it, up to the next `m=`.
    pub(super) lines: Vec<String>,
}

impl MediaSection {
    pub(super) fn is_audio(&self) -> bool {
        self.m_line.starts_with("m=audio ")
    }

    /// The payload types of the `m=` line (`m=<media> <port> <proto> <fmt>...`).
    pub(super) fn formats(&self) -> Vec<u8> {
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
    pub(super) fn parse(sdp: &str) -> Self {
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

    /// The media profiles the audio streams with a port ask for, in order, each once.
    pub(super) fn audio_profiles(&self) -> Vec<super::MediaProfile> {
        let session_fingerprint = self.session.iter().any(|l| l.starts_with("a=fingerprint:"));
        let mut profiles = Vec::new();
        for m in self.media.iter().filter(|m| m.is_audio()) {
            let fields: Vec<&str> = m.m_line.split_whitespace().collect();
            if fields.len() < 4 || fields[1] == "0" {
                continue;
            }
            let fingerprint =
                session_fingerprint || m.lines.iter().any(|l| l.starts_with("a=fingerprint:"));
            let crypto = m.lines.iter().any(|l| l.starts_with("a=crypto:"));
            if let Some(p) = super::MediaProfile::of_section(fields[2], fingerprint, crypto) {
                if !profiles.contains(&p) {
                    profiles.push(p);
                }
            }
        }
        profiles
    }

    /// The audio stream in use: the first one with a port, else the first one.
    fn audio_section(&self) -> Option<&MediaSection> {
        let active = |m: &&MediaSection| m.m_line.split_whitespace().nth(1) != Some("0");
        self.media
            .iter()
            .filter(|m| m.is_audio())
            .find(active)
            .or_else(|| self.media.iter().find(|m| m.is_audio()))
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

// ---- the shape of offers and answers with peers that are not webrtc-rs ----------------------

/// What a remote offer looked like, kept so that our answer can be given the same shape
/// (RFC 3264 §6: one answer m= line per offered m= line, in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OfferShape {
    /// Each offered m= line: (m= line, its own a=mid if any).
    sections: Vec<(String, Option<String>)>,
    /// The index of the section handed to the engine (the audio stream we take).
    chosen: usize,
    /// The mid the engine saw for it (the offered one, or one we made up).
    engine_mid: String,
    /// The offer had `a=group:BUNDLE`.
    bundle: bool,
    /// The chosen section had `a=rtcp-mux`.
    rtcp_mux: bool,
}

/// Session-level attributes that webrtc-rs only reads, or only reads reliably, at media level.
const TRANSPORT_ATTRS: [&str; 6] = [
    "a=ice-ufrag:",
    "a=ice-pwd:",
    "a=ice-options:",
    "a=fingerprint:",
    "a=setup:",
    "a=candidate:",
];

/// Prepares a remote *offer* for webrtc-rs 0.14, which answers only media sections that
/// carry `a=mid` and, without `a=group:BUNDLE`, rejects them with port 0:
///
/// * picks the first `m=audio` line with a non-zero port and an RTP/SAVP(F) protocol and
///   drops every other m= line (they are rejected in [`shape_answer`]);
/// * gives it `a=mid` (`fallback_mid` if it has none) and writes `a=group:BUNDLE <mid>`;
/// * copies session-level ICE/DTLS attributes into it, lower-cases the fingerprint hash
///   name (`SHA-256` → `sha-256`) and keeps only the sha-256 fingerprint;
/// * drops candidates of component 2 (RTCP): the engine ignores components and could
///   otherwise pair with the remote's RTCP port.
///
/// Then [`normalize_remote`] still runs on the result (directions, static payload types).
pub(crate) fn prepare_offer(sdp: &str, fallback_mid: &str) -> Result<(String, OfferShape), String> {
    let parsed = Sdp::parse(sdp);
    let chosen = parsed
        .media
        .iter()
        .position(|m| {
            let f: Vec<&str> = m.m_line.split_whitespace().collect();
            m.is_audio() && f.len() > 3 && f[1] != "0" && f[2].contains("RTP/SAVP")
        })
        .ok_or("the offer has no usable audio stream (DTLS-SRTP audio with a port)")?;
    let bundle = parsed
        .session
        .iter()
        .any(|l| l.starts_with("a=group:BUNDLE"));
    let section = &parsed.media[chosen];
    let own_mid = attr(&section.lines, "a=mid:").map(str::to_owned);
    let engine_mid = own_mid.clone().unwrap_or_else(|| fallback_mid.to_owned());
    let rtcp_mux = section.lines.iter().any(|l| l == "a=rtcp-mux");
    let mut lines = transport_lines(&parsed.session, &section.lines);
    // A bundled offer may carry transport only in the group's first (tagged) section.
    if !lines.iter().any(|l| l.starts_with("a=candidate:")) && bundle {
        if let Some(tagged) = parsed
            .media
            .iter()
            .find(|m| m.lines.iter().any(|l| l.starts_with("a=candidate:")))
        {
            for l in tagged.lines.iter().filter(|l| is_transport(l)) {
                if !lines.iter().any(|x| same_key(x, l)) || l.starts_with("a=candidate:") {
                    lines.push(l.clone());
                }
            }
        }
    }
    let lines = fix_transport(lines)?;
    let mut session: Vec<String> = parsed
        .session
        .iter()
        .filter(|l| !is_transport(l) && !l.starts_with("a=group:"))
        .cloned()
        .collect();
    session.push(format!("a=group:BUNDLE {engine_mid}"));
    let mut media = MediaSection {
        m_line: section.m_line.clone(),
        lines,
    };
    if own_mid.is_none() {
        media.lines.push(format!("a=mid:{engine_mid}"));
    }
    let shape = OfferShape {
        sections: parsed
            .media
            .iter()
            .map(|m| {
                (
                    m.m_line.clone(),
                    attr(&m.lines, "a=mid:").map(str::to_owned),
                )
            })
            .collect(),
        chosen,
        engine_mid,
        bundle,
        rtcp_mux,
    };
    Ok((
        Sdp {
            session,
            media: vec![media],
        }
        .to_string(),
        shape,
    ))
}

/// Prepares a remote *answer* to our offer: the same fix-ups, with each m= line's mid taken
/// by position from our offer (webrtc-rs ignores m= lines without one and then never binds
/// the remote's declared `a=ssrc` to our transceiver: we would hear nothing).
pub(crate) fn prepare_answer(sdp: &str, our_offer: &str) -> Result<String, String> {
    let mut parsed = Sdp::parse(sdp);
    let ours = Sdp::parse(our_offer);
    let session_transport: Vec<String> = parsed
        .session
        .iter()
        .filter(|l| is_transport(l))
        .cloned()
        .collect();
    for (i, section) in parsed.media.iter_mut().enumerate() {
        let lines = transport_lines(&session_transport, &section.lines);
        section.lines = fix_transport(lines)?;
        if attr(&section.lines, "a=mid:").is_none() {
            if let Some(mid) = ours.media.get(i).and_then(|m| attr(&m.lines, "a=mid:")) {
                section.lines.push(format!("a=mid:{mid}"));
            }
        }
    }
    parsed.session.retain(|l| !is_transport(l));
    if let Some(audio) = parsed.audio_section() {
        if audio.m_line.split_whitespace().nth(1) == Some("0") {
            return Err("the far end rejected the audio stream (port 0)".into());
        }
    } else {
        return Err("the answer has no audio stream".into());
    }
    Ok(parsed.to_string())
}

/// Gives the engine's answer (one m=audio section) the offer's shape: every offered m= line
/// in order, the ones we do not take rejected with port 0; `a=mid` and `a=group:BUNDLE` only
/// if the offer had them; `a=rtcp-mux` only if offered.
pub(crate) fn shape_answer(engine_answer: &str, shape: &OfferShape) -> String {
    let parsed = Sdp::parse(engine_answer);
    let mut session: Vec<String> = parsed
        .session
        .iter()
        .filter(|l| !l.starts_with("a=group:"))
        .cloned()
        .collect();
    let own_mid = shape.sections[shape.chosen].1.clone();
    if shape.bundle {
        if let Some(mid) = &own_mid {
            session.push(format!("a=group:BUNDLE {mid}"));
        }
    }
    let media = shape
        .sections
        .iter()
        .enumerate()
        .map(|(i, (m_line, mid))| {
            if i == shape.chosen {
                if let Some(audio) = parsed.media.iter().find(|m| m.is_audio()) {
                    let lines = audio
                        .lines
                        .iter()
                        .filter(|l| own_mid.is_some() || !l.starts_with("a=mid:"))
                        .filter(|l| shape.rtcp_mux || l.as_str() != "a=rtcp-mux")
                        .cloned()
                        .collect();
                    return MediaSection {
                        m_line: audio.m_line.clone(),
                        lines,
                    };
                }
            }
            rejected(m_line, mid.as_deref())
        })
        .collect();
    Sdp { session, media }.to_string()
}

/// `m=<media> 0 <proto> <first format>` (RFC 3264 §6), keeping the offered mid.
pub(super) fn rejected(m_line: &str, mid: Option<&str>) -> MediaSection {
    let f: Vec<&str> = m_line.split_whitespace().collect();
    let (media, proto, fmt) = (
        f.first().copied().unwrap_or("m=audio"),
        f.get(2).copied().unwrap_or("RTP/AVP"),
        f.get(3).copied().unwrap_or("0"),
    );
    MediaSection {
        m_line: format!("{media} 0 {proto} {fmt}"),
        lines: std::iter::once("c=IN IP4 0.0.0.0".to_owned())
            .chain(mid.map(|m| format!("a=mid:{m}")))
            .collect(),
    }
}

pub(super) fn attr<'a>(lines: &'a [String], prefix: &str) -> Option<&'a str> {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(prefix))
        .map(str::trim)
}

fn is_transport(line: &str) -> bool {
    TRANSPORT_ATTRS.iter().any(|p| line.starts_with(p))
}

fn same_key(a: &str, b: &str) -> bool {
    a.split(':').next() == b.split(':').next()
}

/// The media lines plus any session-level transport attribute the section lacks.
fn transport_lines(session: &[String], media: &[String]) -> Vec<String> {
    let mut lines = media.to_vec();
    for l in session.iter().filter(|l| is_transport(l)) {
        if !media.iter().any(|m| same_key(m, l)) {
            lines.push(l.clone());
        }
    }
    lines
}

/// Lower-cases fingerprint hash names and keeps one sha-256 fingerprint (webrtc-rs compares
/// the name case-sensitively with "sha-256" and refuses differing fingerprints); drops
/// component-2 candidates.
fn fix_transport(lines: Vec<String>) -> Result<Vec<String>, String> {
    let mut out = Vec::with_capacity(lines.len());
    let mut fingerprint = None;
    let mut offered = Vec::new();
    for l in lines {
        if let Some(v) = l.strip_prefix("a=fingerprint:") {
            let mut it = v.split_whitespace();
            let (hash, value) = (
                it.next().unwrap_or("").to_ascii_lowercase(),
                it.next().unwrap_or(""),
            );
            if hash == "sha-256" && fingerprint.is_none() {
                fingerprint = Some(format!("a=fingerprint:sha-256 {value}"));
            }
            offered.push(hash);
        } else if l.starts_with("a=candidate:") && l.split_whitespace().nth(1) != Some("1") {
            continue;
        } else {
            out.push(l);
        }
    }
    match fingerprint {
        Some(f) => out.push(f),
        None if offered.is_empty() => {} // has_ice_and_dtls reports this case
        None => {
            return Err(format!(
                "no sha-256 DTLS fingerprint (offered: {})",
                offered.join(", ")
            ))
        }
    }
    Ok(out)
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

#[cfg(test)]
mod shape_tests {
    use super::*;

    /// baresip 1.0's offer, byte for byte (session-level ICE/DTLS, no mid, no BUNDLE).
    const BARESIP_OFFER: &str = "v=0\r\no=- 1148879787 473768185 IN IP4 127.0.0.1\r\ns=-\r\n\
c=IN IP4 127.0.0.1\r\nt=0 0\r\na=tool:baresip 1.0.0\r\na=ice-ufrag:KpDDDxd\r\n\
a=ice-pwd:UHa5GdCjPSPlbTM1vNvAlyqtl0SChqW\r\na=setup:actpass\r\n\
a=fingerprint:SHA-256 BE:C9:79:4D:BC:23:A2:58:A7:C2:D0:9A:BE:1A:15:F4:FA:56:BA:EE:F5:4D:96:B1:60:7B:68:36:0B:21:34:7A\r\n\
m=audio 9810 UDP/TLS/RTP/SAVPF 96 0 101\r\nc=IN IP4 192.0.2.2\r\na=rtpmap:96 opus/48000/2\r\n\
a=fmtp:96 stereo=1;sprop-stereo=1\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\na=sendrecv\r\na=label:1\r\na=rtcp-rsize\r\na=ssrc:3998608937 cname:sip:bob@127.0.0.1:25061\r\n\
a=rtcp-mux\r\na=minptime:20\r\na=ptime:20\r\n\
a=candidate:c0000202 1 UDP 2113929471 192.0.2.2 9810 typ host\r\n\
a=candidate:020000fd 1 UDP 2113929471 fd00::2 9810 typ host\r\n";

    /// What webrtc-rs answers (trimmed): one audio section, mid, BUNDLE, rtcp-mux.
    const ENGINE_ANSWER: &str = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
a=fingerprint:sha-256 AA:BB\r\na=group:BUNDLE 0\r\nm=audio 5000 UDP/TLS/RTP/SAVPF 96 0 101\r\n\
c=IN IP4 127.0.0.1\r\na=setup:active\r\na=mid:0\r\na=ice-ufrag:u\r\na=ice-pwd:p\r\na=rtcp-mux\r\n\
a=rtcp-rsize\r\na=rtpmap:96 opus/48000/2\r\na=sendrecv\r\n\
a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n";

    fn media_count(sdp: &str) -> usize {
        sdp.lines().filter(|l| l.starts_with("m=")).count()
    }

    #[test]
    fn offer_without_mid_or_bundle_gets_both_for_the_engine() {
        let (engine, shape) = prepare_offer(BARESIP_OFFER, "0").unwrap();
        assert!(
            engine.contains("a=group:BUNDLE 0\r\n"),
            "the engine answers only bundled sections: {engine}"
        );
        let media = engine.split("m=audio").nth(1).unwrap();
        assert!(
            media.contains("a=mid:0\r\n"),
            "the engine answers only sections with a mid"
        );
        assert!(
            media.contains("a=fingerprint:sha-256 BE:C9"),
            "hash name lower-cased, at media level"
        );
        assert!(
            media.contains("a=setup:actpass\r\n") && media.contains("a=ice-ufrag:KpDDDxd\r\n"),
            "session-level ICE and DTLS attributes are moved where the engine reads them"
        );
        assert!(
            !engine.contains("SHA-256"),
            "hash names compare case-insensitively (RFC 8122)"
        );
        assert_eq!(
            engine.matches("a=fingerprint:").count(),
            1,
            "one fingerprint, not two"
        );
        assert!(
            !shape.bundle && shape.rtcp_mux,
            "the offer's own shape is remembered"
        );
    }

    #[test]
    fn answer_to_a_midless_offer_has_its_shape() {
        let (_, shape) = prepare_offer(BARESIP_OFFER, "0").unwrap();
        let out = shape_answer(ENGINE_ANSWER, &shape);
        assert_eq!(
            media_count(&out),
            1,
            "one answer m= line per offered m= line"
        );
        assert!(
            out.contains("m=audio 5000 UDP/TLS/RTP/SAVPF 96 0 101\r\n"),
            "the audio stream is accepted: {out}"
        );
        assert!(
            !out.contains("a=mid:") && !out.contains("a=group:"),
            "no mid or BUNDLE in an answer to an offer that had none: {out}"
        );
        assert!(out.contains("a=rtcp-mux\r\n"), "offered, so kept");
    }

    #[test]
    fn offer_with_mid_but_no_bundle_is_not_rejected() {
        let offer = BARESIP_OFFER.replace("a=label:1\r\n", "a=mid:audio\r\n");
        let (engine, shape) = prepare_offer(&offer, "0").unwrap();
        assert!(
            engine.contains("a=group:BUNDLE audio\r\n") && engine.contains("a=mid:audio\r\n"),
            "the offer's own mid is kept and bundled for the engine"
        );
        let out = shape_answer(&ENGINE_ANSWER.replace("mid:0", "mid:audio"), &shape);
        assert!(out.contains("m=audio 5000 "), "port kept: {out}");
        assert!(
            out.contains("a=mid:audio\r\n") && !out.contains("a=group:"),
            "the answer keeps the mid and adds no BUNDLE the offer did not ask for: {out}"
        );
    }

    #[test]
    fn no_rtcp_mux_offered_none_answered() {
        let offer = BARESIP_OFFER.replace("a=rtcp-mux\r\n", "").replace(
            "a=ptime:20\r\n",
            "a=ptime:20\r\na=candidate:c0000202 2 UDP 2113929470 192.0.2.2 9811 typ host\r\n",
        );
        let (engine, shape) = prepare_offer(&offer, "0").unwrap();
        assert!(
            !engine.contains(" 9811 "),
            "RTCP candidates are not given to the engine"
        );
        assert!(
            !shape_answer(ENGINE_ANSWER, &shape).contains("a=rtcp-mux"),
            "rtcp-mux is not answered when not offered (RFC 5761 §5.1.1)"
        );
    }

    #[test]
    fn several_m_lines_video_rejected_in_order() {
        let offer = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
a=ice-ufrag:uu\r\na=ice-pwd:pppppppppppppppppppppp\r\na=fingerprint:Sha-256 01:02\r\n\
m=video 7000 UDP/TLS/RTP/SAVPF 97\r\na=rtpmap:97 VP8/90000\r\na=setup:actpass\r\n\
a=candidate:1 1 udp 1 192.0.2.1 7000 typ host\r\n\
m=audio 0 UDP/TLS/RTP/SAVPF 0\r\na=setup:actpass\r\n\
m=audio 6000 UDP/TLS/RTP/SAVPF 0 8\r\na=setup:actpass\r\na=candidate:1 1 udp 1 192.0.2.1 6000 typ host\r\n";
        let (engine, shape) = prepare_offer(offer, "0").unwrap();
        assert_eq!(
            media_count(&engine),
            1,
            "the engine sees only the stream we take"
        );
        assert!(
            engine.contains("m=audio 6000 ") && engine.contains("a=mid:0\r\n"),
            "the first audio stream with a port is taken"
        );
        assert_eq!(
            shape.chosen, 2,
            "video and the port-0 audio are passed over"
        );
        let out = shape_answer(ENGINE_ANSWER, &shape);
        let m: Vec<&str> = out.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(
            m,
            [
                "m=video 0 UDP/TLS/RTP/SAVPF 97",
                "m=audio 0 UDP/TLS/RTP/SAVPF 0",
                "m=audio 5000 UDP/TLS/RTP/SAVPF 96 0 101"
            ],
            "every offered m= line is answered, in order, the ones not taken with port 0"
        );
        assert!(
            !out.contains("a=mid:"),
            "no mids were offered, none are answered"
        );
    }

    #[test]
    fn bundled_offer_keeps_only_accepted_mids_in_the_group() {
        let offer = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE a v\r\n\
m=audio 6000 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 192.0.2.1\r\na=mid:a\r\na=ice-ufrag:uu\r\n\
a=ice-pwd:pppppppppppppppppppppp\r\na=fingerprint:sha-256 01:02\r\na=setup:actpass\r\na=rtcp-mux\r\n\
a=candidate:1 1 udp 1 192.0.2.1 6000 typ host\r\n\
m=video 6000 UDP/TLS/RTP/SAVPF 97\r\nc=IN IP4 192.0.2.1\r\na=mid:v\r\na=rtpmap:97 VP8/90000\r\n";
        let (engine, shape) = prepare_offer(offer, "0").unwrap();
        assert!(
            engine.contains("a=group:BUNDLE a\r\n"),
            "only the taken stream is bundled for the engine"
        );
        let out = shape_answer(&ENGINE_ANSWER.replace("mid:0", "mid:a"), &shape);
        assert!(
            out.contains("a=group:BUNDLE a\r\n"),
            "the answer's group lists only accepted mids: {out}"
        );
        assert!(
            out.contains("m=video 0 UDP/TLS/RTP/SAVPF 97\r\nc=IN IP4 0.0.0.0\r\na=mid:v\r\n"),
            "video is rejected with port 0 and keeps its mid: {out}"
        );
    }

    #[test]
    fn an_offer_with_nothing_acceptable_is_refused() {
        let video_only = "v=0\r\ns=-\r\nt=0 0\r\nm=video 7000 UDP/TLS/RTP/SAVPF 97\r\n";
        assert!(
            prepare_offer(video_only, "0").is_err(),
            "no audio: refused before ringing"
        );
        let plain = BARESIP_OFFER.replace("UDP/TLS/RTP/SAVPF", "RTP/AVP");
        assert!(
            prepare_offer(&plain, "0").is_err(),
            "plain RTP is not this profile"
        );
        let sha1 = BARESIP_OFFER.replace("SHA-256", "SHA-1");
        assert!(
            prepare_offer(&sha1, "0").unwrap_err().contains("sha-256"),
            "a fingerprint the engine cannot check is refused with a reason"
        );
    }

    #[test]
    fn baresip_answer_gets_our_mid_and_a_lowercase_hash() {
        let answer = BARESIP_OFFER.replace("a=setup:actpass", "a=setup:active");
        let ours = ENGINE_ANSWER; // any SDP of ours with a=mid:0 in its audio section
        let out = prepare_answer(&answer, ours).unwrap();
        let media = out.split("m=audio").nth(1).unwrap();
        assert!(
            media.contains("a=mid:0\r\n") && media.contains("a=setup:active\r\n"),
            "a midless answer gets our offer's mid, and its setup where the engine reads it"
        );
        assert!(
            media.contains("a=fingerprint:sha-256 "),
            "hash name lower-cased"
        );
        let session = out.split("m=audio").next().unwrap();
        assert!(
            !session.contains("a=fingerprint") && !session.contains("a=setup"),
            "moved, not copied: the engine refuses differing session and media fingerprints"
        );
        let rejected = BARESIP_OFFER.replace("m=audio 9810", "m=audio 0");
        assert!(
            prepare_answer(&rejected, ours).is_err(),
            "an answer that rejects our audio ends the call with a reason"
        );
    }
}
