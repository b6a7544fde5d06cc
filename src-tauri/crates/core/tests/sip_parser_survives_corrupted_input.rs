//! Whatever arrives on the wire — truncated, bit-flipped, spliced or random bytes — the SIP
//! parser and the stream framer answer with a value or an error, never a panic, and a message
//! that parses serializes back to something that parses again.

use hookflash_core::sip::{next_stream_frame, Message, StreamFrame};

const SEEDS: &[&str] = &[
    "INVITE sip:bob@127.0.0.1:5060;transport=tcp SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5062;branch=z9hG4bKabc;rport\r\n\
Max-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@hookflash.local>;tag=1\r\nTo: <sip:bob@hookflash.local>\r\nCall-ID: c1\r\n\
CSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:5062>\r\nRefer-To: <sip:carol@h?Replaces=a%3Bto-tag%3D1%3Bfrom-tag%3D2>\r\n\
Content-Type: application/sdp\r\nContent-Length: 10\r\n\r\nv=0\r\no=- 1",
    "SIP/2.0 200 OK\r\nv: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nf: <sip:a@h>;tag=x\r\nt: <sip:b@h>;tag=y\r\ni: id\r\n\
CSeq: 2 REFER\r\nm: <sip:b@10.0.0.2:5070>\r\nl: 0\r\n\r\n",
    "NOTIFY sip:a@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK2\r\nFrom: <sip:b@h>;tag=y\r\nTo: <sip:a@h>;tag=x\r\n\
Call-ID: id\r\nCSeq: 3 NOTIFY\r\nEvent: refer\r\nSubscription-State: terminated\r\nContent-Type: message/sipfrag\r\n\
Content-Length: 16\r\n\r\nSIP/2.0 200 OK\r\n",
];

/// A small deterministic generator (xorshift), so a failure reproduces exactly.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut m = seed.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(6) {
            0 if !m.is_empty() => {
                let i = rng.below(m.len());
                m[i] ^= 1 << rng.below(8);
            }
            1 if !m.is_empty() => m.truncate(rng.below(m.len())),
            2 => {
                let i = rng.below(m.len() + 1);
                let junk = [
                    b':', b';', b'<', b'>', b'"', b'\\', b'\r', b'\n', b'%', b'@', b'?', b'=',
                    0xff, b'9',
                ];
                m.insert(i, junk[rng.below(junk.len())]);
            }
            3 if !m.is_empty() => {
                let a = rng.below(m.len());
                let b = rng.below(m.len());
                let (a, b) = (a.min(b), a.max(b));
                m.drain(a..b);
            }
            4 => m.extend_from_slice(b"Content-Length: 99999999999999999999999\r\n\r\n"),
            _ => {
                let i = rng.below(m.len() + 1);
                let n = rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                m.splice(i..i, bytes);
            }
        }
    }
    m
}

#[test]
fn corrupted_messages_never_panic_the_parser_or_the_framer() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut parsed = 0;
    for round in 0..20_000 {
        let seed = SEEDS[round % SEEDS.len()].as_bytes();
        let input = mutate(&mut rng, seed);
        if let Ok(msg) = Message::parse(&input) {
            parsed += 1;
            let again = Message::parse(&msg.to_bytes());
            assert!(
                again.is_ok(),
                "round {round}: what we parse we can print and parse again: {:?}",
                String::from_utf8_lossy(&input)
            );
            if let Message::Request(r) = &msg {
                let _ = r.validate();
                let _ = (r.from(), r.to(), r.cseq(), r.top_via(), r.contact());
            }
        }
        match next_stream_frame(&input) {
            StreamFrame::Message(n) => assert!(
                n <= input.len() && n > 0,
                "round {round}: a frame lies within the buffer"
            ),
            StreamFrame::KeepAlive { len, .. } => assert!(
                len <= input.len(),
                "round {round}: keep-alive within the buffer"
            ),
            StreamFrame::Incomplete | StreamFrame::Invalid(_) => {}
        }
    }
    assert!(
        parsed > 1000,
        "the mutations keep many messages valid, so printing is exercised too ({parsed})"
    );
}
