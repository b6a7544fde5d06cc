//! SDP for the classic profile (RFC 3264 / 4566 / 4568 / 3605 / 5761): what we write into
//! offers and answers, and what we read out of a peer's.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use webrtc::srtp::protection_profile::ProtectionProfile;

use super::profile::MediaProfile;
use super::sdp::{
    attr, direction_in, rejected, section_codecs, Direction, MediaSection, Sdp, SdpCodec,
};
use super::{Codec, TELEPHONE_EVENT_PAYLOAD_TYPE};

/// SRTP master key plus salt for the AES-CM suites: 16 + 14 bytes (RFC 4568 §6.2.1).
const KEY_SALT_LEN: usize = 30;

/// An SDES crypto suite we implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CryptoSuite {
    /// `AES_CM_128_HMAC_SHA1_80`, the suite every SDES implementation has.
    AesCm128HmacSha1_80,
    /// `AES_CM_128_HMAC_SHA1_32`, the short-tag variant.
    AesCm128HmacSha1_32,
}

impl CryptoSuite {
    /// Our offer's suites, in our order of preference.
    pub(crate) const OFFERED: [CryptoSuite; 2] = [
        CryptoSuite::AesCm128HmacSha1_80,
        CryptoSuite::AesCm128HmacSha1_32,
    ];

    fn name(self) -> &'static str {
        match self {
            CryptoSuite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            CryptoSuite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        // Suite names are case-sensitive tokens in RFC 4568, but nothing is lost by being
        // lenient: no two suites differ only in case.
        Self::OFFERED
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }

    /// The SRTP library's profile for this suite.
    pub(crate) fn profile(self) -> ProtectionProfile {
        match self {
            CryptoSuite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
            CryptoSuite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
        }
    }
}

/// One `a=crypto` line's key (RFC 4568): a tag, a suite, and a master key with its salt.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SdesKey {
    pub(crate) tag: u32,
    pub(crate) suite: CryptoSuite,
    key_salt: [u8; KEY_SALT_LEN],
}

impl fmt::Debug for SdesKey {
    /// Never prints the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SdesKey")
            .field("tag", &self.tag)
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

impl SdesKey {
    /// A fresh random key for `suite` under `tag`.
    pub(crate) fn random(tag: u32, suite: CryptoSuite) -> Self {
        let mut key_salt = [0u8; KEY_SALT_LEN];
        rand::Rng::fill(&mut rand::thread_rng(), &mut key_salt[..]);
        Self {
            tag,
            suite,
            key_salt,
        }
    }

    /// The same key under another tag and suite (our answer reuses the offer's tag).
    pub(crate) fn retagged(&self, tag: u32, suite: CryptoSuite) -> Self {
        Self {
            tag,
            suite,
            key_salt: self.key_salt,
        }
    }

    /// The master key (16 bytes).
    pub(crate) fn key(&self) -> &[u8] {
        &self.key_salt[..16]
    }

    /// The master salt (14 bytes).
    pub(crate) fn salt(&self) -> &[u8] {
        &self.key_salt[16..]
    }

    /// The attribute line, `a=crypto:<tag> <suite> inline:<key||salt>`.
    fn line(&self) -> String {
        format!(
            "a=crypto:{} {} inline:{}",
            self.tag,
            self.suite.name(),
            BASE64.encode(self.key_salt)
        )
    }

    /// Reads an `a=crypto:` value. `Ok(None)` for a line we cannot use but may skip (another
    /// suite, a key with an MKI, session parameters that switch encryption off); `Err` for
    /// a malformed one.
    fn parse(value: &str) -> Result<Option<Self>, String> {
        let mut fields = value.split_whitespace();
        let (Some(tag), Some(suite), Some(params)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(format!("a malformed a=crypto line: {value:?}"));
        };
        let tag: u32 = tag
            .parse()
            .map_err(|_| format!("a=crypto tag {tag:?} is not a number"))?;
        let Some(suite) = CryptoSuite::from_name(suite) else {
            return Ok(None);
        };
        // Session parameters (RFC 4568 §6.3): any that turn protection off, or that we do
        // not implement, make the line unusable for us.
        if fields.next().is_some() {
            return Ok(None);
        }
        // Only one key, without an MKI (we do not implement MKIs or rekeying by MKI).
        if params.contains(';') {
            return Ok(None);
        }
        let Some(inline) = params.strip_prefix("inline:") else {
            return Err(format!(
                "a=crypto key parameters {params:?} are not inline:"
            ));
        };
        let mut parts = inline.split('|');
        let encoded = parts.next().unwrap_or_default();
        if parts.any(|p| p.contains(':')) {
            return Ok(None); // an MKI
        }
        let decoded = BASE64
            .decode(encoded)
            .map_err(|_| "an a=crypto key is not valid base64".to_owned())?;
        let key_salt: [u8; KEY_SALT_LEN] = decoded.try_into().map_err(|v: Vec<u8>| {
            format!(
                "an a=crypto key has {} bytes; {KEY_SALT_LEN} are needed",
                v.len()
            )
        })?;
        Ok(Some(Self {
            tag,
            suite,
            key_salt,
        }))
    }
}

/// The formats of an `m=` line: audio codecs and `telephone-event`s, each with its payload
/// type (and the events' clock rates).
pub(crate) type Formats = (Vec<(u8, Codec)>, Vec<(u8, u32)>);

/// What we write into a classic SDP (offer or answer).
#[derive(Debug, Clone)]
pub(crate) struct LocalMedia {
    pub(crate) session_id: u64,
    pub(crate) version: u64,
    pub(crate) ip: IpAddr,
    pub(crate) port: u16,
    pub(crate) profile: MediaProfile,
    /// Audio codecs with the payload type each is written with.
    pub(crate) codecs: Vec<(u8, Codec)>,
    /// `telephone-event` formats: payload type and clock rate.
    pub(crate) events: Vec<(u8, u32)>,
    pub(crate) direction: Direction,
    pub(crate) crypto: Vec<SdesKey>,
    pub(crate) rtcp_mux: bool,
}

impl LocalMedia {
    /// The codecs and events we offer, with our default payload types.
    pub(crate) fn offered_formats(codecs: &[Codec]) -> Formats {
        (
            codecs
                .iter()
                .map(|c| (c.default_payload_type(), *c))
                .collect(),
            vec![(TELEPHONE_EVENT_PAYLOAD_TYPE, 8000)],
        )
    }

    fn family(&self) -> &'static str {
        if self.ip.is_ipv4() {
            "IP4"
        } else {
            "IP6"
        }
    }

    fn session_lines(&self) -> Vec<String> {
        vec![
            "v=0".to_owned(),
            format!(
                "o=- {} {} IN {} {}",
                self.session_id,
                self.version,
                self.family(),
                self.ip
            ),
            "s=Hookflash".to_owned(),
            format!("c=IN {} {}", self.family(), self.ip),
            "t=0 0".to_owned(),
        ]
    }

    fn section(&self) -> MediaSection {
        let mut formats: Vec<String> = self.codecs.iter().map(|(pt, _)| pt.to_string()).collect();
        formats.extend(self.events.iter().map(|(pt, _)| pt.to_string()));
        let mut lines = Vec::new();
        for (pt, codec) in &self.codecs {
            match codec.rtpmap_channels() {
                Some(ch) => lines.push(format!(
                    "a=rtpmap:{pt} {}/{}/{ch}",
                    codec.name(),
                    codec.clock_rate()
                )),
                None => lines.push(format!(
                    "a=rtpmap:{pt} {}/{}",
                    codec.name(),
                    codec.clock_rate()
                )),
            }
            if let Some(fmtp) = codec.fmtp() {
                lines.push(format!("a=fmtp:{pt} {fmtp}"));
            }
        }
        for (pt, rate) in &self.events {
            lines.push(format!("a=rtpmap:{pt} telephone-event/{rate}"));
            lines.push(format!("a=fmtp:{pt} 0-16"));
        }
        lines.push("a=ptime:20".to_owned());
        if self.rtcp_mux {
            lines.push("a=rtcp-mux".to_owned());
        }
        // RFC 3605: say where RTCP goes even when it is the default, for middleboxes.
        lines.push(format!("a=rtcp:{}", self.port.wrapping_add(1)));
        lines.extend(self.crypto.iter().map(SdesKey::line));
        lines.push(format!("a={}", self.direction.as_attribute()));
        MediaSection {
            m_line: format!(
                "m=audio {} {} {}",
                self.port,
                self.profile.sdp_proto(),
                formats.join(" ")
            ),
            lines,
        }
    }

    /// A whole offer: one audio stream.
    pub(crate) fn offer(&self) -> String {
        Sdp {
            session: self.session_lines(),
            media: vec![self.section()],
        }
        .to_string()
    }

    /// An answer to `offer`, in its shape (RFC 3264 §6): our stream in place of the offered
    /// section `chosen`, every other offered section rejected with port 0.
    pub(crate) fn answer(&self, offer: &str, chosen: usize) -> String {
        let offered = Sdp::parse(offer);
        let media = offered
            .media
            .iter()
            .enumerate()
            .map(|(i, m)| {
                if i == chosen {
                    self.section()
                } else {
                    rejected(&m.m_line, attr(&m.lines, "a=mid:"))
                }
            })
            .collect();
        Sdp {
            session: self.session_lines(),
            media,
        }
        .to_string()
    }
}

/// What a peer's SDP says about the audio stream we use with it.
#[derive(Debug, Clone)]
pub(crate) struct RemoteMedia {
    /// Which m= line (0-based) of the SDP it is.
    pub(crate) index: usize,
    pub(crate) profile: MediaProfile,
    /// Where to send RTP; `None` while the peer has `c=0.0.0.0` (RFC 2543 hold).
    pub(crate) rtp: Option<SocketAddr>,
    /// Where to send RTCP when it is not muxed.
    pub(crate) rtcp: Option<SocketAddr>,
    pub(crate) rtcp_mux: bool,
    pub(crate) direction: Direction,
    /// Its codecs and telephone-events, in its order.
    pub(crate) codecs: Vec<SdpCodec>,
    /// The keys it offers (or the one it answered with), usable ones only.
    pub(crate) crypto: Vec<SdesKey>,
    /// This section alone, as an SDP (for code that reads "the audio stream" of an SDP).
    pub(crate) section_sdp: String,
}

/// Reads the audio stream to use from a peer's classic SDP: the first `m=audio` line with a
/// port whose profile is in `allowed` and that we can serve (a codec in common with
/// `codecs`, an address, for SDES a key in a suite we have). The error says why, in words,
/// for the most promising stream when none can be used.
pub(crate) fn read_remote(
    sdp: &str,
    allowed: &[MediaProfile],
    codecs: &[Codec],
) -> Result<RemoteMedia, String> {
    let parsed = Sdp::parse(sdp);
    let mut why = None;
    for (index, section) in parsed.media.iter().enumerate() {
        let fields: Vec<&str> = section.m_line.split_whitespace().collect();
        if !section.is_audio() || fields.len() < 4 || fields[1] == "0" {
            continue;
        }
        let has_fingerprint = section
            .lines
            .iter()
            .chain(&parsed.session)
            .any(|l| l.starts_with("a=fingerprint:"));
        let has_crypto = section.lines.iter().any(|l| l.starts_with("a=crypto:"));
        let Some(profile) = MediaProfile::of_section(fields[2], has_fingerprint, has_crypto) else {
            why.get_or_insert(format!(
                "the audio stream's protocol {} is not RTP",
                fields[2]
            ));
            continue;
        };
        if !allowed.contains(&profile) {
            why.get_or_insert(format!(
                "{profile} is not allowed by this account's media settings"
            ));
            continue;
        }
        match read_section(&parsed, index, section, profile, codecs) {
            Ok(remote) => return Ok(remote),
            Err(e) => {
                why.get_or_insert(e);
            }
        }
    }
    Err(why.unwrap_or_else(|| "the SDP has no audio stream with a port".to_owned()))
}

fn read_section(
    parsed: &Sdp,
    index: usize,
    section: &MediaSection,
    profile: MediaProfile,
    codecs: &[Codec],
) -> Result<RemoteMedia, String> {
    let fields: Vec<&str> = section.m_line.split_whitespace().collect();
    let port: u16 = fields[1]
        .split('/')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("the audio port {:?} is not a number", fields[1]))?;
    let connection = attr(&section.lines, "c=")
        .or_else(|| attr(&parsed.session, "c="))
        .ok_or("the audio stream has no connection address (c=)")?;
    let ip = connection_ip(connection)?;
    let held = ip.is_unspecified();
    let rtp = (!held).then_some(SocketAddr::new(ip, port));
    let rtcp_mux = section.lines.iter().any(|l| l == "a=rtcp-mux");
    let rtcp = match attr(&section.lines, "a=rtcp:") {
        Some(value) => Some(rtcp_address(value, ip)?),
        None => Some(SocketAddr::new(ip, port.wrapping_add(1))),
    }
    .filter(|_| !held);
    let mut direction = direction_in(&section.lines)
        .or_else(|| direction_in(&parsed.session))
        .unwrap_or_default();
    if held {
        // An RFC 2543 hold: the peer wants nothing sent to it.
        direction = if direction.sends() {
            Direction::SendOnly
        } else {
            Direction::Inactive
        };
    }
    let offered = section_codecs(section);
    let common = offered
        .iter()
        .any(|c| Codec::from_sdp(&c.name, c.clock_rate).is_some_and(|c| codecs.contains(&c)));
    if !common {
        let names: Vec<&str> = offered.iter().map(|c| c.name.as_str()).collect();
        return Err(format!(
            "no common audio codec (remote: {})",
            names.join(", ")
        ));
    }
    let mut crypto = Vec::new();
    if profile == MediaProfile::Sdes {
        for value in section
            .lines
            .iter()
            .filter_map(|l| l.strip_prefix("a=crypto:"))
        {
            if let Some(key) = SdesKey::parse(value)? {
                crypto.push(key);
            }
        }
        if crypto.is_empty() {
            return Err(
                "the peer offers SRTP without a key in a suite we have (AES_CM_128_HMAC_SHA1_80 or _32, no MKI)"
                    .to_owned(),
            );
        }
    }
    let section_sdp = Sdp {
        session: parsed.session.clone(),
        media: vec![MediaSection {
            m_line: section.m_line.clone(),
            lines: section.lines.clone(),
        }],
    }
    .to_string();
    Ok(RemoteMedia {
        index,
        profile,
        rtp,
        rtcp,
        rtcp_mux,
        direction,
        codecs: offered,
        crypto,
        section_sdp,
    })
}

/// The address of a `c=` value (`IN IP4 192.0.2.1`, `IN IP6 ::1`, a multicast TTL suffix
/// is ignored). Host names are refused: resolving them would block the media set-up.
fn connection_ip(value: &str) -> Result<IpAddr, String> {
    let fields: Vec<&str> = value.split_whitespace().collect();
    let [net, family, address] = fields[..] else {
        return Err(format!("a malformed connection line c={value}"));
    };
    if !net.eq_ignore_ascii_case("IN")
        || !(family.eq_ignore_ascii_case("IP4") || family.eq_ignore_ascii_case("IP6"))
    {
        return Err(format!("an unknown connection type c={value}"));
    }
    let address = address.split('/').next().unwrap_or_default();
    address
        .parse()
        .map_err(|_| format!("the connection address {address:?} is not an IP address"))
}

/// `a=rtcp:<port> [IN IP4 <address>]` (RFC 3605).
fn rtcp_address(value: &str, default_ip: IpAddr) -> Result<SocketAddr, String> {
    let mut fields = value.split_whitespace();
    let port: u16 = fields
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("a malformed a=rtcp:{value}"))?;
    let rest: Vec<&str> = fields.collect();
    let ip = if rest.is_empty() {
        default_ip
    } else {
        connection_ip(&rest.join(" "))?
    };
    Ok(SocketAddr::new(ip, port))
}

/// The payload types an answer keeps from a remote offer: the offered codecs we implement (in
/// the offer's order, with its numbers) and its telephone-events.
pub(crate) fn answer_formats(offered: &[SdpCodec], ours: &[Codec]) -> Formats {
    let mut codecs = Vec::new();
    let mut events = Vec::new();
    for c in offered {
        if c.name.eq_ignore_ascii_case("telephone-event") {
            events.push((c.payload_type, c.clock_rate));
        } else if let Some(codec) = Codec::from_sdp(&c.name, c.clock_rate) {
            if ours.contains(&codec) && !codecs.iter().any(|(_, k)| *k == codec) {
                codecs.push((c.payload_type, codec));
            }
        }
    }
    (codecs, events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(profile: MediaProfile) -> LocalMedia {
        let (codecs, events) = LocalMedia::offered_formats(Codec::all());
        LocalMedia {
            session_id: 42,
            version: 1,
            ip: "192.0.2.10".parse().unwrap(),
            port: 40000,
            profile,
            codecs,
            events,
            direction: Direction::SendRecv,
            crypto: if profile == MediaProfile::Sdes {
                vec![SdesKey::random(1, CryptoSuite::AesCm128HmacSha1_80)]
            } else {
                vec![]
            },
            rtcp_mux: true,
        }
    }

    #[test]
    fn our_offer_is_read_back_as_we_meant_it() {
        let offer = local(MediaProfile::Sdes).offer();
        assert!(
            offer.contains("m=audio 40000 RTP/SAVP 111 9 0 8 101\r\n"),
            "{offer}"
        );
        assert!(offer.contains("a=rtpmap:9 G722/8000\r\n"));
        let remote = read_remote(&offer, &MediaProfile::ALL, Codec::all()).expect("usable");
        assert_eq!(remote.profile, MediaProfile::Sdes);
        assert_eq!(remote.rtp, Some("192.0.2.10:40000".parse().unwrap()));
        assert_eq!(remote.rtcp, Some("192.0.2.10:40001".parse().unwrap()));
        assert!(remote.rtcp_mux);
        assert_eq!(remote.crypto.len(), 1, "our own key parses");
        assert_eq!(remote.codecs.len(), 5, "four codecs and telephone-event");
    }

    #[test]
    fn a_desk_phone_offer_without_rtpmaps_or_rtcp_attributes() {
        // Static payload types only, session-level c=, upper-case tokens, no a=rtcp.
        let offer = "v=0\r\no=phone 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n\
                     m=audio 5004 RTP/AVP 8 0 101\r\na=rtpmap:101 TELEPHONE-EVENT/8000\r\na=SENDRECV\r\n";
        let remote = read_remote(offer, &MediaProfile::ALL, Codec::all()).expect("usable");
        assert_eq!(remote.profile, MediaProfile::Rtp);
        assert_eq!(remote.rtp, Some("198.51.100.7:5004".parse().unwrap()));
        assert_eq!(
            remote.rtcp,
            Some("198.51.100.7:5005".parse().unwrap()),
            "RTCP defaults to the next port (RFC 3550 §11)"
        );
        let (codecs, events) = answer_formats(&remote.codecs, Codec::all());
        assert_eq!(
            codecs,
            vec![(8, Codec::Pcma), (0, Codec::Pcmu)],
            "the offer's order and numbers"
        );
        assert_eq!(
            events,
            vec![(101, 8000)],
            "telephone-event matched in any case"
        );
    }

    #[test]
    fn best_effort_srtp_takes_the_stream_the_policy_allows() {
        // Two m=audio lines, SAVP then AVP (the "best effort SRTP" some PBXes send).
        let offer = "v=0\r\no=- 1 1 IN IP4 203.0.113.5\r\ns=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\n\
             m=audio 7000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n\
             m=audio 7002 RTP/AVP 0\r\n";
        let encrypted = read_remote(offer, &MediaProfile::ALL, Codec::all()).expect("usable");
        assert_eq!(
            (encrypted.index, encrypted.profile),
            (0, MediaProfile::Sdes)
        );
        let plain = read_remote(offer, &[MediaProfile::Rtp], Codec::all()).expect("usable");
        assert_eq!((plain.index, plain.profile), (1, MediaProfile::Rtp));
        let answer = local(MediaProfile::Rtp).answer(offer, 1);
        let parsed = Sdp::parse(&answer);
        assert_eq!(
            parsed.media.len(),
            2,
            "the answer keeps every offered m= line"
        );
        assert!(
            parsed.media[0].m_line.starts_with("m=audio 0 RTP/SAVP"),
            "{answer}"
        );
        assert!(parsed.media[1].m_line.starts_with("m=audio 40000 RTP/AVP"));
    }

    #[test]
    fn offers_we_cannot_serve_say_why() {
        let sdp = |m: &str, extra: &str| {
            format!("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n{m}\r\n{extra}")
        };
        let plain = sdp("m=audio 4000 RTP/AVP 0", "");
        let err = read_remote(
            &plain,
            &[MediaProfile::WebRtc, MediaProfile::Sdes],
            Codec::all(),
        )
        .expect_err("plain RTP is not allowed");
        assert!(err.contains("plain RTP is not allowed"), "{err}");
        let g729 = sdp("m=audio 4000 RTP/AVP 18", "");
        let err = read_remote(&g729, &MediaProfile::ALL, Codec::all()).expect_err("G.729 only");
        assert!(
            err.contains("no common audio codec (remote: G729)"),
            "{err}"
        );
        let keyless = sdp(
            "m=audio 4000 RTP/SAVP 0",
            "a=crypto:1 F8_128_HMAC_SHA1_80 inline:AAAA\r\n",
        );
        let err = read_remote(&keyless, &MediaProfile::ALL, Codec::all()).expect_err("no suite");
        assert!(err.contains("without a key in a suite we have"), "{err}");
        let short = sdp(
            "m=audio 4000 RTP/SAVP 0",
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAA\r\n",
        );
        let err = read_remote(&short, &MediaProfile::ALL, Codec::all()).expect_err("short key");
        assert!(err.contains("30 are needed"), "{err}");
        let named = sdp("m=audio 4000 RTP/AVP 0", "c=IN IP4 pbx.example.com\r\n");
        let err = read_remote(&named, &MediaProfile::ALL, Codec::all()).expect_err("a host name");
        assert!(err.contains("not an IP address"), "{err}");
        let fax = sdp("m=image 4000 udptl t38", "");
        assert!(read_remote(&fax, &MediaProfile::ALL, Codec::all()).is_err());
    }

    #[test]
    fn old_style_hold_means_nothing_is_sent_to_the_peer() {
        let held = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        let remote = read_remote(held, &MediaProfile::ALL, Codec::all()).expect("usable");
        assert_eq!(remote.rtp, None);
        assert_eq!(remote.direction, Direction::SendOnly);
    }

    #[test]
    fn crypto_lines_are_read_as_rfc_4568_writes_them() {
        let key = SdesKey::random(7, CryptoSuite::AesCm128HmacSha1_32);
        let line = key.line();
        let value = line.strip_prefix("a=crypto:").unwrap();
        assert_eq!(SdesKey::parse(value), Ok(Some(key.clone())));
        assert_eq!(
            SdesKey::parse(&format!("{value}|2^20")).map(|k| k.is_some()),
            Ok(true),
            "a lifetime is allowed"
        );
        assert_eq!(
            SdesKey::parse(&format!("{value}|2^20|1:4")),
            Ok(None),
            "an MKI is skipped, not misread"
        );
        assert_eq!(
            SdesKey::parse(&format!("{value} UNENCRYPTED_SRTP")),
            Ok(None),
            "session parameters that weaken protection are not accepted"
        );
        assert!(
            !format!("{key:?}").contains(&BASE64.encode(key.key())),
            "Debug hides the key"
        );
    }
}
