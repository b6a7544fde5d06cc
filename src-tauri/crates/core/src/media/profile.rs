//! Media profiles: how a call's audio travels, and how an SDP says which one it wants.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::MediaError;

/// How a call's audio travels. A per-account policy lists the allowed ones in order: offers
/// start with the first, and a call refused for its media (488) is tried again with the next.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub enum MediaProfile {
    /// ICE and DTLS-SRTP (`UDP/TLS/RTP/SAVPF`), as browsers and the switchboard use.
    #[serde(rename = "webrtc")]
    WebRtc,
    /// RTP/SAVP with keys exchanged in the SDP (SDES, RFC 4568), as most desk phones that
    /// encrypt do. Only as safe as the signalling: use it over TLS.
    Sdes,
    /// Plain RTP/AVP, unencrypted: what every SIP phone, PBX and trunk can do.
    Rtp,
}

impl MediaProfile {
    /// Every profile, in the default policy's order: the most protected first.
    pub const ALL: [MediaProfile; 3] =
        [MediaProfile::WebRtc, MediaProfile::Sdes, MediaProfile::Rtp];

    /// The SDP transport protocol this profile offers.
    pub fn sdp_proto(self) -> &'static str {
        match self {
            MediaProfile::WebRtc => "UDP/TLS/RTP/SAVPF",
            MediaProfile::Sdes => "RTP/SAVP",
            MediaProfile::Rtp => "RTP/AVP",
        }
    }

    /// The name used in settings and on the command line (`webrtc`, `sdes`, `rtp`).
    pub fn as_str(self) -> &'static str {
        match self {
            MediaProfile::WebRtc => "webrtc",
            MediaProfile::Sdes => "sdes",
            MediaProfile::Rtp => "rtp",
        }
    }

    /// Whether the audio is encrypted.
    pub fn is_encrypted(self) -> bool {
        self != MediaProfile::Rtp
    }

    /// The classic profiles (no ICE, SDP-signalled addresses).
    pub(crate) fn is_classic(self) -> bool {
        self != MediaProfile::WebRtc
    }

    /// What one offered media section asks for, from its protocol (compared
    /// case-insensitively, RFC 4566 §5.14) and whether it carries DTLS fingerprints or SDES
    /// keys. `None` for a protocol no profile serves (TCP/RTP, UDPTL, a video codec's
    /// protocol...). A secure profile with neither fingerprint nor key is reported as the
    /// profile its protocol names, for the checks to refuse with a reason.
    pub(crate) fn of_section(proto: &str, has_fingerprint: bool, has_crypto: bool) -> Option<Self> {
        let proto = proto.to_ascii_uppercase();
        match proto.as_str() {
            "RTP/AVP" | "RTP/AVPF" => Some(MediaProfile::Rtp),
            "UDP/TLS/RTP/SAVP" | "UDP/TLS/RTP/SAVPF" => Some(MediaProfile::WebRtc),
            "RTP/SAVP" | "RTP/SAVPF" => Some(if has_fingerprint && !has_crypto {
                MediaProfile::WebRtc
            } else {
                MediaProfile::Sdes
            }),
            _ => None,
        }
    }
}

impl fmt::Display for MediaProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MediaProfile::WebRtc => "WebRTC (ICE + DTLS-SRTP)",
            MediaProfile::Sdes => "SRTP with SDES keys",
            MediaProfile::Rtp => "plain RTP",
        })
    }
}

impl FromStr for MediaProfile {
    type Err = MediaError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        MediaProfile::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| {
                MediaError::InvalidConfig(format!(
                    "unknown media profile {wanted:?}; expected webrtc, sdes or rtp"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_name_their_profile() {
        assert_eq!(
            MediaProfile::of_section("RTP/AVP", false, false),
            Some(MediaProfile::Rtp)
        );
        assert_eq!(
            MediaProfile::of_section("rtp/avp", false, false),
            Some(MediaProfile::Rtp),
            "the protocol token is case-insensitive"
        );
        assert_eq!(
            MediaProfile::of_section("RTP/SAVP", false, true),
            Some(MediaProfile::Sdes)
        );
        assert_eq!(
            MediaProfile::of_section("UDP/TLS/RTP/SAVPF", true, false),
            Some(MediaProfile::WebRtc)
        );
        assert_eq!(
            MediaProfile::of_section("RTP/SAVPF", true, false),
            Some(MediaProfile::WebRtc),
            "older WebRTC stacks write RTP/SAVPF with a fingerprint"
        );
        assert_eq!(MediaProfile::of_section("udptl", false, false), None);
    }

    #[test]
    fn names_round_trip() {
        for p in MediaProfile::ALL {
            assert_eq!(p.as_str().parse::<MediaProfile>().ok(), Some(p));
            assert_eq!(
                serde_json::to_string(&p).ok(),
                Some(format!("\"{}\"", p.as_str())),
                "settings store the short name"
            );
        }
        assert!("zrtp".parse::<MediaProfile>().is_err());
    }
}
