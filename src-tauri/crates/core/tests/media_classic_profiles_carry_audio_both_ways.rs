//! The classic media profile (RTP/AVP, and RTP/SAVP with SDES keys) carries audio both ways
//! with every codec, holds and resumes, sends DTMF, answers to where the peer really is
//! (symmetric RTP), and ignores packets that are not the peer's.

mod media_support;

use std::net::UdpSocket;
use std::time::Duration;

use hookflash_core::audio::{AudioSource, ToneSource, FRAME_SAMPLES, SAMPLE_RATE};
use hookflash_core::media::{
    sdp_direction, Codec, Direction, MediaEvent, MediaProfile, MediaSession,
};
use media_support::{call, has_tone, tone_of, Peer, ALICE_HZ, BOB_HZ};

/// Time for packets already in flight to drain after a renegotiation.
const SETTLE: Duration = Duration::from_millis(200);

/// The `m=audio` line of an SDP.
fn m_line(sdp: &str) -> &str {
    sdp.lines().find(|l| l.starts_with("m=audio")).unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_codec_carries_audio_both_ways_on_both_classic_profiles() {
    for profile in [MediaProfile::Rtp, MediaProfile::Sdes] {
        for codec in [Codec::Pcmu, Codec::Pcma, Codec::G722, Codec::Opus] {
            let mut alice = Peer::with_profile("alice", ALICE_HZ, vec![codec], profile).await;
            let mut bob = Peer::with_profile("bob", BOB_HZ, Codec::all().to_vec(), profile).await;
            let offer = alice.session.create_offer().await.expect("offer");
            assert!(
                m_line(&offer).contains(profile.sdp_proto()),
                "{profile} is offered as {}: {offer}",
                profile.sdp_proto()
            );
            assert_eq!(
                offer.contains("a=crypto:"),
                profile == MediaProfile::Sdes,
                "only SDES carries keys in the SDP"
            );
            assert!(
                !offer.contains("a=ice-ufrag"),
                "the classic profile has no ICE"
            );
            let answer = bob.session.accept_offer(&offer).await.expect("answer");
            alice.session.accept_answer(&answer).await.expect("apply");
            assert_eq!(alice.session.negotiated_codec(), Some(codec));
            assert_eq!(
                bob.session.negotiated_codec(),
                Some(codec),
                "{profile} {codec}"
            );
            for peer in [&mut alice, &mut bob] {
                peer.wait_event(Duration::from_secs(5), |e| {
                    *e == MediaEvent::FirstAudioFrame
                })
                .await
                .unwrap_or_else(|| panic!("{} hears something over {profile} {codec}", peer.name));
            }
            let (a, b) = tokio::join!(
                alice.listen(Duration::from_millis(600)),
                bob.listen(Duration::from_millis(600))
            );
            assert_eq!(
                tone_of(&a),
                Some(BOB_HZ),
                "Alice hears Bob over {profile} {codec}"
            );
            assert_eq!(
                tone_of(&b),
                Some(ALICE_HZ),
                "Bob hears Alice over {profile} {codec}"
            );
            alice.session.close().await;
            bob.session.close().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdes_calls_hold_resume_and_send_dtmf() {
    let (all, sdes) = (Codec::all().to_vec(), MediaProfile::Sdes);
    let mut alice = Peer::with_profile("alice", ALICE_HZ, all.clone(), sdes).await;
    let mut bob = Peer::with_profile("bob", BOB_HZ, all, sdes).await;
    call(&mut alice, &mut bob).await;

    let hold = alice
        .session
        .create_reoffer(Direction::SendOnly)
        .await
        .expect("hold");
    let hold_answer = bob.session.accept_offer(&hold).await.expect("hold answer");
    assert_eq!(
        sdp_direction(&hold_answer),
        Direction::RecvOnly,
        "RFC 3264: a sendonly offer is answered recvonly"
    );
    alice
        .session
        .accept_answer(&hold_answer)
        .await
        .expect("apply hold");
    tokio::time::sleep(SETTLE).await;
    let (a, b) = tokio::join!(
        alice.listen(Duration::from_millis(800)),
        bob.listen(Duration::from_millis(800))
    );
    assert!(!has_tone(&b, ALICE_HZ), "the held side hears nothing");
    assert!(!has_tone(&a, BOB_HZ), "the holding side hears nothing");

    let resume = alice
        .session
        .create_reoffer(Direction::SendRecv)
        .await
        .expect("resume");
    let resume_answer = bob
        .session
        .accept_offer(&resume)
        .await
        .expect("resume answer");
    alice
        .session
        .accept_answer(&resume_answer)
        .await
        .expect("apply resume");
    tokio::time::sleep(SETTLE).await;
    let (a, b) = tokio::join!(
        alice.listen(Duration::from_millis(800)),
        bob.listen(Duration::from_millis(800))
    );
    assert_eq!(
        tone_of(&b),
        Some(ALICE_HZ),
        "after resume Bob hears Alice again"
    );
    assert_eq!(
        tone_of(&a),
        Some(BOB_HZ),
        "after resume Alice hears Bob again"
    );

    alice
        .session
        .send_dtmf("19#")
        .await
        .expect("DTMF over SRTP");
    let mut digits = String::new();
    while digits.len() < 3 {
        match bob
            .wait_event(Duration::from_secs(3), |e| matches!(e, MediaEvent::Dtmf(_)))
            .await
        {
            Some(MediaEvent::Dtmf(d)) => digits.push(d),
            _ => break,
        }
    }
    assert_eq!(digits, "19#", "each key press arrives once, in order");
    alice.session.close().await;
    bob.session.close().await;
}

/// Rewrites the port of the `m=audio` line (and the RTCP port) of an SDP.
fn with_port(sdp: &str, port: u16) -> String {
    sdp.lines()
        .map(|l| {
            if let Some(rest) = l.strip_prefix("m=audio ") {
                let (_, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                format!("m=audio {port} {tail}")
            } else if l.starts_with("a=rtcp:") {
                format!("a=rtcp:{}", port + 1)
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
        + "\r\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_goes_back_to_where_the_peer_sends_from() {
    // Alice's offer names a port nobody listens on, as a NAT in front of her would: Bob's
    // audio reaches her only if Bob answers to where her packets come from (RFC 4961).
    let all = Codec::all().to_vec();
    let mut alice = Peer::with_profile("alice", ALICE_HZ, all.clone(), MediaProfile::Rtp).await;
    let bob = Peer::with_profile("bob", BOB_HZ, all, MediaProfile::Rtp).await;
    let hole = UdpSocket::bind("127.0.0.1:0").expect("a port to name");
    let wrong = hole.local_addr().expect("port").port();
    drop(hole);
    let offer = with_port(&alice.session.create_offer().await.expect("offer"), wrong);
    let answer = bob.session.accept_offer(&offer).await.expect("answer");
    alice.session.accept_answer(&answer).await.expect("apply");
    alice
        .wait_event(Duration::from_secs(5), |e| {
            *e == MediaEvent::FirstAudioFrame
        })
        .await
        .expect("Alice hears Bob although her SDP named the wrong port");
    assert_eq!(
        tone_of(&alice.listen(Duration::from_millis(600)).await),
        Some(BOB_HZ),
        "Bob's audio follows Alice's packets back to her"
    );
    alice.session.close().await;
    bob.session.close().await;
}

/// RTP packets of a 1500 Hz PCMU tone, as a stranger would send them.
fn stranger_packets(count: u16) -> Vec<Vec<u8>> {
    let mut tone = ToneSource::new(1500.0);
    let mut frame = vec![0i16; FRAME_SAMPLES];
    (0..count)
        .map(|i| {
            tone.read_frame(&mut frame).expect("tone");
            let mut packet = vec![0x80, 0x00];
            packet.extend_from_slice(&(1000 + i).to_be_bytes());
            packet.extend_from_slice(&(u32::from(i) * 160).to_be_bytes());
            packet.extend_from_slice(&0x5747_5747u32.to_be_bytes());
            // µ-law by the textbook formula: enough for a loud tone.
            packet.extend(frame.iter().step_by(6).map(|&s| ulaw(s)));
            packet
        })
        .collect()
}

fn ulaw(sample: i16) -> u8 {
    let mut pcm = i32::from(sample);
    let sign = if pcm < 0 {
        pcm = -pcm;
        0x80
    } else {
        0
    };
    pcm = pcm.min(32_635) + 0x84;
    let (mut exponent, mut mask) = (7, 0x4000);
    while exponent > 0 && pcm & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (pcm >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) | mantissa) as u8
}

/// The RTP port of an SDP's audio stream.
fn port_of(sdp: &str) -> u16 {
    m_line(sdp)
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("a port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_from_anyone_but_the_peer_are_not_played() {
    for profile in [MediaProfile::Rtp, MediaProfile::Sdes] {
        let all = Codec::all().to_vec();
        let alice = Peer::with_profile("alice", ALICE_HZ, all.clone(), profile).await;
        let mut bob = Peer::with_profile("bob", BOB_HZ, all, profile).await;
        let offer = alice.session.create_offer().await.expect("offer");
        let answer = bob.session.accept_offer(&offer).await.expect("answer");
        alice.session.accept_answer(&answer).await.expect("apply");
        bob.wait_event(Duration::from_secs(5), |e| {
            *e == MediaEvent::FirstAudioFrame
        })
        .await
        .expect("Bob hears Alice");
        // Alice goes quiet; a stranger sends loud audio straight at Bob's RTP port, as a
        // scanner injecting audio into calls would.
        alice.session.close().await;
        tokio::time::sleep(SETTLE).await;
        let stranger = UdpSocket::bind("127.0.0.1:0").expect("stranger");
        let target = ("127.0.0.1", port_of(&answer));
        let listening = bob.heard_len();
        for packet in stranger_packets(60) {
            stranger.send_to(&packet, target).expect("send");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(SETTLE).await;
        let heard = bob.heard_since(listening);
        assert!(
            !hookflash_core::audio::tone_present(&heard, 1500.0, SAMPLE_RATE),
            "over {profile} nothing of the stranger's tone is played"
        );
        bob.session.close().await;
    }
}

#[test]
fn offers_are_matched_to_the_account_policy() {
    let plain = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
                 m=audio 4000 RTP/AVP 9 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";
    assert_eq!(
        MediaSession::check_offer(plain, Codec::all(), &MediaProfile::ALL).ok(),
        Some(MediaProfile::Rtp),
        "the default policy answers plain RTP"
    );
    let refused = MediaSession::check_offer(
        plain,
        Codec::all(),
        &[MediaProfile::WebRtc, MediaProfile::Sdes],
    )
    .expect_err("an encrypted-only account refuses plain RTP");
    assert_eq!(refused.code(), "media.incompatible");
    assert!(
        refused
            .to_string()
            .contains("plain RTP, which this account's media settings do not allow"),
        "the refusal says why in words: {refused}"
    );
    let g729 = plain.replace("9 0 101", "18");
    let refused = MediaSession::check_offer(&g729, Codec::all(), &MediaProfile::ALL)
        .expect_err("no common codec");
    assert!(
        refused.to_string().contains("no common audio codec"),
        "{refused}"
    );
}
