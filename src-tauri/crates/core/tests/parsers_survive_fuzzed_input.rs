//! Fuzzing on the stable toolchain: whatever arrives from the network or on the agent's
//! stdin — truncated, bit-flipped, spliced, with duplicated lines or huge numbers — every
//! parser answers with a value or an error, never a panic or a hang, and what it reads it
//! prints in a form that reads back the same.
//!
//! Each target mutates its corpus (`tests/fuzz/<target>/`, plus the RFC 4475 messages for
//! the SIP targets) with one shared, seeded mutator and runs every input, the corpus itself
//! first, under `catch_unwind`. `HOOKFLASH_FUZZ_ITERATIONS` sets the mutated inputs per
//! target (default [`DEFAULT_ITERATIONS`], the whole file well under a minute in a debug
//! build on two cores); `HOOKFLASH_FUZZ_SEED` the seed (default [`DEFAULT_SEED`]; a failure
//! prints the one it ran with). A failing input is written under the target directory's
//! tmp and printed escaped: copy it into `tests/fuzz/<target>/` to keep it as a regression.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use hookflash_core::api::{parse_command_line, CommandEnvelope, Event};
use hookflash_core::auth::{authorization, is_valid_user, Challenge, DigestResponse, Scope, Token};
use hookflash_core::media::sdp::{audio_codecs, sdp_direction};
use hookflash_core::media::{Codec, MediaProfile, MediaSession};
use hookflash_core::sip::{next_stream_frame, Message, NameAddr, StreamFrame, Uri, Via};
use hookflash_core::transfer::{
    refer_to, sipfrag, sipfrag_status, split_refer_to, voicemail_owner, voicemail_uri, Replaces,
};
use hookflash_core::ErrorCode;

/// Mutated inputs per target unless `HOOKFLASH_FUZZ_ITERATIONS` says otherwise.
const DEFAULT_ITERATIONS: u64 = 100_000;
/// The seed unless `HOOKFLASH_FUZZ_SEED` says otherwise (fixed, so CI runs reproduce).
const DEFAULT_SEED: u64 = 0x4475_2006_3261_0001;
/// No progress for this long is a hang.
const HANG: Duration = Duration::from_secs(20);

// ------------------------------------------------------------------------------ the harness

/// A small deterministic generator (splitmix64), so a failure reproduces exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes that mean something to one parser or another.
const DICTIONARY: &[&[u8]] = &[
    b"\r\n",
    b"\r\n ",
    b"\r\n\r\n",
    b";",
    b"=",
    b",",
    b":",
    b"\"",
    b"\\",
    b"<",
    b">",
    b"@",
    b"?",
    b"&",
    b"%",
    b"%00",
    b"%4",
    b"[",
    b"]",
    b"/",
    b" ",
    b"\t",
    b"\0",
    b"\xff",
    b"\xc3\xa9",
    b"\xef\xbb\xbf",
    b"SIP/2.0",
    b"sip:",
    b"tel:",
    b"Content-Length: ",
    b"l: ",
    b"Via: SIP/2.0/UDP h;branch=z9hG4bK",
    b";tag=",
    b";lr",
    b"Replaces=",
    b"to-tag=",
    b"Digest ",
    b"m=audio ",
    b"a=rtpmap:",
    b"a=crypto:",
    b"{",
    b"}",
    b"\"requestId\":",
    b"\"command\":",
    b"null",
    b"[]",
    b"\\u0000",
    b"\\ud800",
];

/// Numbers at and beyond the edges of the integer types the parsers use.
const HUGE: &[&[u8]] = &[
    b"0",
    b"-1",
    b"255",
    b"256",
    b"65535",
    b"65536",
    b"2147483648",
    b"4294967295",
    b"4294967296",
    b"18446744073709551615",
    b"18446744073709551616",
    b"99999999999999999999999999999999",
];

/// One to four stacked mutations of a corpus entry.
fn mutate(rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut m = corpus[rng.below(corpus.len())].clone();
    for _ in 0..=rng.below(4) {
        let at = rng.below(m.len() + 1);
        match rng.below(9) {
            0 if !m.is_empty() => {
                let i = rng.below(m.len());
                m[i] ^= 1 << rng.below(8);
            }
            1 => {
                let token = DICTIONARY[rng.below(DICTIONARY.len())];
                m.splice(at..at, token.iter().copied());
            }
            2 if !m.is_empty() => {
                let end = (at + 1 + rng.below(32)).min(m.len());
                m.drain(at.min(end)..end);
            }
            3 => m.truncate(at),
            4 => {
                // Splice: our head, another entry's tail.
                let other = &corpus[rng.below(corpus.len())];
                let from = rng.below(other.len() + 1);
                m.truncate(at);
                m.extend_from_slice(&other[from..]);
            }
            5 => {
                // Duplicate a line (a second Content-Length, To, m= ...).
                let starts: Vec<usize> = std::iter::once(0)
                    .chain(
                        m.iter()
                            .enumerate()
                            .filter(|(_, &b)| b == b'\n')
                            .map(|(i, _)| i + 1),
                    )
                    .filter(|&i| i < m.len())
                    .collect();
                if let Some(&start) = starts.get(rng.below(starts.len())) {
                    let end = m[start..]
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(m.len(), |p| start + p + 1);
                    let line = m[start..end].to_vec();
                    m.splice(end..end, line);
                }
            }
            6 => {
                // Replace a run of digits with a huge (or negative) number.
                let digits: Vec<usize> = (0..m.len()).filter(|&i| m[i].is_ascii_digit()).collect();
                if let Some(&i) = digits.get(rng.below(digits.len())) {
                    let end = i + m[i..].iter().take_while(|b| b.is_ascii_digit()).count();
                    let start = i - m[..i]
                        .iter()
                        .rev()
                        .take_while(|b| b.is_ascii_digit())
                        .count();
                    m.splice(start..end, HUGE[rng.below(HUGE.len())].iter().copied());
                }
            }
            7 => {
                let bytes: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.next() as u8).collect();
                m.splice(at..at, bytes);
            }
            _ if !m.is_empty() => {
                let i = rng.below(m.len());
                m[i] = DICTIONARY[rng.below(DICTIONARY.len())][0];
            }
            _ => m.push(rng.next() as u8),
        }
    }
    m
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => {
            let v = v.trim();
            let parsed = match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
        }
        Err(_) => default,
    }
}

/// The files of `tests/<dir>/`, sorted by name so the corpus order (and a replay) is stable.
fn corpus_dir(dir: &str) -> Vec<Vec<u8>> {
    let path = format!("{}/tests/{dir}", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = std::fs::read_dir(&path)
        .unwrap_or_else(|e| panic!("the corpus {path} exists: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("{} reads: {e}", p.display())))
        .collect()
}

/// Runs `check` on the corpus of `target` (and of `also`), then on mutations of it, each
/// under `catch_unwind`, watched for hangs; fails with a report that replays the input.
fn fuzz(target: &'static str, also: &[&str], check: fn(&[u8])) {
    let mut corpus = corpus_dir(&format!("fuzz/{target}"));
    for dir in also {
        corpus.extend(corpus_dir(dir));
    }
    assert!(
        !corpus.is_empty(),
        "{target}: the corpus has inputs to mutate"
    );
    let seed = env_u64("HOOKFLASH_FUZZ_SEED", DEFAULT_SEED);
    let iterations = env_u64("HOOKFLASH_FUZZ_ITERATIONS", DEFAULT_ITERATIONS);
    eprintln!(
        "fuzz {target}: {} corpus inputs, {iterations} mutations, HOOKFLASH_FUZZ_SEED={seed:#x}",
        corpus.len()
    );
    let current = Arc::new(Mutex::new((0u64, Vec::new())));
    let progress = Arc::new(AtomicU64::new(0));
    let (done_tx, done_rx) = mpsc::channel::<Result<(), String>>();
    let (worker_current, worker_progress) = (current.clone(), progress.clone());
    std::thread::spawn(move || {
        // Each target has its own stream, so adding a target does not change another's inputs.
        let mut rng = Rng(seed
            ^ target.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            }));
        let total = corpus.len() as u64 + iterations;
        for i in 0..total {
            let input = match corpus.get(i as usize) {
                Some(entry) => entry.clone(),
                None => mutate(&mut rng, &corpus),
            };
            *worker_current.lock().unwrap() = (i, input.clone());
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| check(&input))) {
                let why = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let _ = done_tx.send(Err(report(target, seed, i, &input, &why)));
                return;
            }
            worker_progress.store(i + 1, Ordering::Relaxed);
        }
        let _ = done_tx.send(Ok(()));
    });
    let (mut last, mut since) = (0, Instant::now());
    loop {
        match done_rx.recv_timeout(Duration::from_millis(200)) {
            Ok(Ok(())) => return,
            Ok(Err(report)) => panic!("{report}"),
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("fuzz {target}: the worker died"),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let now = progress.load(Ordering::Relaxed);
                if now != last {
                    (last, since) = (now, Instant::now());
                } else if since.elapsed() > HANG {
                    let (i, input) = current.lock().unwrap().clone();
                    panic!("{}", report(target, seed, i, &input, "no answer: a hang"));
                }
            }
        }
    }
}

/// What a failure prints: enough to replay it, and the input saved to a file.
fn report(target: &str, seed: u64, iteration: u64, input: &[u8], why: &str) -> String {
    let saved = format!(
        "{}/fuzz-{target}-{seed:x}-{iteration}.bin",
        env!("CARGO_TARGET_TMPDIR")
    );
    let saved = match std::fs::write(&saved, input) {
        Ok(()) => saved,
        Err(e) => format!("(not saved: {e})"),
    };
    format!(
        "fuzz target {target} failed on input {iteration} (HOOKFLASH_FUZZ_SEED={seed:#x}): {why}\n\
         input ({} bytes, saved to {saved}; copy it into tests/fuzz/{target}/ to keep it): \"{}\"",
        input.len(),
        input.escape_ascii()
    )
}

// ------------------------------------------------------------------------------ the checks

/// Headers without Content-Length, which printing moves to the end.
fn without_length(m: &Message) -> Vec<(String, String)> {
    m.headers()
        .0
        .iter()
        .filter(|(n, _)| !["content-length", "l"].contains(&n.to_ascii_lowercase().as_str()))
        .cloned()
        .collect()
}

fn uri_round_trips(u: &Uri) {
    let printed = u.to_string();
    assert_eq!(
        printed.parse::<Uri>().as_ref(),
        Ok(u),
        "a URI we read prints as {printed:?}, which must read back the same"
    );
}

fn name_addr_round_trips(a: &NameAddr) {
    let printed = a.to_string();
    assert_eq!(
        printed.parse::<NameAddr>().as_ref(),
        Ok(a),
        "an address we read prints as {printed:?}, which must read back the same"
    );
}

fn sip_message(data: &[u8]) {
    let m = match Message::parse(data) {
        Ok(m) => m,
        Err(e) => {
            if let Some(r) = Message::reply_to_unparsable(data, &e.0) {
                assert!(
                    matches!(r.status, 400 | 416 | 505),
                    "an unparsable request is answered 400, 416 or 505, not {}",
                    r.status
                );
                let printed = Message::Response(r.clone()).to_bytes();
                assert!(
                    matches!(Message::parse(&printed), Ok(Message::Response(p)) if p.status == r.status),
                    "our answer to junk must itself parse: {:?}",
                    String::from_utf8_lossy(&printed)
                );
            }
            return;
        }
    };
    let again = Message::parse(&m.to_bytes()).unwrap_or_else(|e| {
        panic!(
            "what we parse we print in a form we parse again ({e}): {:?}",
            String::from_utf8_lossy(&m.to_bytes())
        )
    });
    assert_eq!(
        without_length(&again),
        without_length(&m),
        "printing keeps every header, in order"
    );
    match (&m, &again) {
        (Message::Request(a), Message::Request(b)) => assert_eq!(
            (&a.method, &a.uri, &a.body),
            (&b.method, &b.uri, &b.body),
            "printing keeps the Request-Line and the body"
        ),
        (Message::Response(a), Message::Response(b)) => assert_eq!(
            (a.status, &a.reason, &a.body),
            (b.status, &b.reason, &b.body),
            "printing keeps the Status-Line and the body"
        ),
        _ => panic!("printing turned a request into a response or back"),
    }
    let headers = m.headers();
    for via in headers.get_all("Via") {
        if let Ok(v) = via.parse::<Via>() {
            let printed = v.to_string();
            assert_eq!(
                printed.parse::<Via>().as_ref(),
                Ok(&v),
                "a Via we read prints as {printed:?}, which must read back the same"
            );
        }
    }
    for name in ["From", "To", "Contact", "Refer-To", "Route", "Record-Route"] {
        for value in headers.get_all(name) {
            if let Ok(a) = value.parse::<NameAddr>() {
                name_addr_round_trips(&a);
            }
        }
    }
    match &m {
        Message::Request(r) => {
            uri_round_trips(&r.uri);
            let valid = r.validate().is_ok();
            let _ = (
                r.from(),
                r.to(),
                r.cseq(),
                r.top_via(),
                r.contact(),
                r.call_id(),
            );
            if valid {
                let resp = r.response(486, None, Some("fuzz"));
                let printed = Message::Response(resp).to_bytes();
                assert!(
                    Message::parse(&printed).is_ok(),
                    "our answer to a valid request must parse: {:?}",
                    String::from_utf8_lossy(&printed)
                );
            }
        }
        Message::Response(r) => {
            let _ = (
                r.from(),
                r.to(),
                r.cseq(),
                r.top_via(),
                r.contact(),
                r.class(),
            );
        }
    }
}

fn stream(data: &[u8]) {
    let first = next_stream_frame(data);
    if !matches!(first, StreamFrame::Incomplete) {
        let mut more = data.to_vec();
        more.extend_from_slice(b"OPTIONS sip:x SIP/2.0");
        assert_eq!(
            next_stream_frame(&more),
            first,
            "a framing decision does not change when more bytes arrive"
        );
    }
    // As a connection's reader does: frame after frame until it must wait or close.
    let mut buf = data;
    loop {
        match next_stream_frame(buf) {
            StreamFrame::Message(n) => {
                assert!(n > 0 && n <= buf.len(), "a frame lies within the buffer");
                let _ = Message::parse(&buf[..n]);
                buf = &buf[n..];
            }
            StreamFrame::KeepAlive { len, .. } => {
                assert!(
                    len > 0 && len <= buf.len(),
                    "a keep-alive lies within the buffer"
                );
                buf = &buf[len..];
            }
            StreamFrame::Incomplete | StreamFrame::Invalid(_) => break,
        }
    }
}

fn uri(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    if let Ok(u) = s.parse::<Uri>() {
        uri_round_trips(&u);
        uri_round_trips(&u.without_params());
        let _ = (u.aor(), u.host_port(5060), u.transport());
    }
    if let Ok(a) = s.parse::<NameAddr>() {
        name_addr_round_trips(&a);
        let _ = a.tag();
    }
}

fn sipfrag_body(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    if let Some(code) = sipfrag_status(&s) {
        assert!(
            (100..700).contains(&code),
            "a sipfrag status is a SIP status: {code}"
        );
        assert_eq!(
            sipfrag_status(&sipfrag(code, "Fuzz")),
            Some(code),
            "the sipfrag we write for a status reads back as it"
        );
    }
    let _ = Message::parse(data);
}

fn replaces_round_trips(r: &Replaces) {
    let printed = r.to_string();
    assert_eq!(
        Replaces::parse(&printed).as_ref(),
        Some(r),
        "a Replaces we read prints as {printed:?}, which must read back the same"
    );
}

fn refer_to_target(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    if let Some(r) = Replaces::parse(&s) {
        replaces_round_trips(&r);
    }
    let Ok(a) = s.parse::<NameAddr>() else {
        return;
    };
    let (target, headers) = split_refer_to(&a.uri);
    assert!(
        target.headers.is_empty(),
        "the target to call has no URI headers left"
    );
    for (name, value) in &headers {
        assert!(
            ["Replaces", "X-Disable-Forwarding", "Accept-Contact"]
                .iter()
                .any(|ok| ok.eq_ignore_ascii_case(name)),
            "a REFER cannot inject {name:?}"
        );
        if name.eq_ignore_ascii_case("Replaces") {
            if let Some(r) = Replaces::parse(value) {
                replaces_round_trips(&r);
                // Through a Refer-To on the wire and back: escaped, printed, parsed, unescaped.
                let wire = refer_to(&target, Some(&r), true).to_string();
                let back: Uri = wire
                    .parse()
                    .unwrap_or_else(|e| panic!("the Refer-To we write, {wire:?}, reads: {e}"));
                let (_, carried) = split_refer_to(&back);
                let carried = carried
                    .iter()
                    .find(|(n, _)| n == "Replaces")
                    .and_then(|(_, v)| Replaces::parse(v));
                assert_eq!(
                    carried.as_ref(),
                    Some(&r),
                    "Replaces survives the Refer-To {wire:?}"
                );
            }
        }
    }
    let _ = voicemail_owner(&a.uri);
    if let (Some(user), Some(vm)) = (
        a.uri.user.as_deref(),
        voicemail_uri(&a.uri, "hookflash.local", None),
    ) {
        let owner = Uri::sip(Some(user), &a.uri.host, None);
        if owner.to_string().parse::<Uri>().as_ref() == Ok(&owner) {
            // Users compare exactly, hosts without regard to case (RFC 3261 §19.1.4).
            let named = voicemail_owner(&vm).map(|o| (o.user, o.host.to_ascii_lowercase()));
            assert_eq!(
                named,
                Some((owner.user, owner.host.to_ascii_lowercase())),
                "the voicemail URI {vm} names its owner"
            );
        }
    }
}

fn digest(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    if let Ok(ch) = s.parse::<Challenge>() {
        let printed = ch.to_string();
        assert_eq!(
            printed.parse::<Challenge>().as_ref(),
            Ok(&ch),
            "a challenge we read prints as {printed:?}, which must read back the same"
        );
        let answer = authorization(
            &ch,
            "REGISTER",
            "sip:hookflash.local",
            "alice",
            "pw",
            1,
            "c",
        );
        let parsed: DigestResponse = answer
            .parse()
            .unwrap_or_else(|e| panic!("our answer {answer:?} reads: {e:?}"));
        let md5 = ch
            .algorithm
            .as_deref()
            .is_none_or(|a| a.eq_ignore_ascii_case("MD5") || a.eq_ignore_ascii_case("MD5-sess"));
        if md5 {
            assert!(
                parsed.verify("REGISTER", "pw"),
                "our answer to {printed:?} verifies with the password"
            );
        }
    }
    if let Ok(r) = s.parse::<DigestResponse>() {
        let _ = r.verify("REGISTER", "pw");
        let _ = r.verify_ha1("INVITE", "not hex at all");
    }
}

fn token(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    if let Ok(t) = Token::parse(&s) {
        assert_eq!(
            Token::parse(&t.to_string()).as_ref().ok(),
            Some(&t),
            "a token we read prints back the same"
        );
        for scope in Scope::ALL {
            let _ = (t.verify("secret", scope, 1_700_000_000), t.only(scope));
        }
        let _ = t.sip_username();
    }
    let user = s.trim();
    if is_valid_user(user) {
        let t = Token::issue("secret", user, Duration::from_secs(60), 1_700_000_000);
        let back = Token::parse(&t.to_string())
            .unwrap_or_else(|e| panic!("the token we issue for {user:?} reads: {e:?}"));
        assert!(
            Scope::ALL
                .iter()
                .all(|&scope| back.verify("secret", scope, 1_700_000_030).is_ok()),
            "the token we issue for {user:?} verifies"
        );
    }
}

fn sdp(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    let _ = MediaSession::check_offer(&s, Codec::all(), &MediaProfile::ALL);
    for profile in MediaProfile::ALL {
        if let Ok(chosen) = MediaSession::check_offer(&s, &[Codec::Pcmu], &[profile]) {
            assert_eq!(
                chosen, profile,
                "an offer is only ever taken in an allowed profile"
            );
        }
    }
    let _ = (sdp_direction(&s), audio_codecs(&s));
}

fn agent_command(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    for line in s.lines() {
        match parse_command_line(line) {
            Ok(env) => {
                let printed = serde_json::to_string(&env).expect("a command serializes");
                assert_eq!(
                    serde_json::from_str::<CommandEnvelope>(&printed)
                        .ok()
                        .as_ref(),
                    Some(&env),
                    "a command we read prints as {printed}, which must read back the same"
                );
            }
            Err(error) => {
                let Event::Error {
                    code, request_id, ..
                } = *error
                else {
                    panic!("a bad line is answered with an error event, not {error:?}");
                };
                assert_eq!(
                    code,
                    ErrorCode::CommandMalformed,
                    "a bad line is command.malformed"
                );
                let written = serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| v.get("requestId")?.as_str().map(str::to_owned));
                assert_eq!(
                    request_id, written,
                    "the error carries the line's requestId"
                );
            }
        }
    }
}

// ------------------------------------------------------------------------------ the targets

#[test]
fn sip_messages_survive_fuzzing_and_print_back_the_same() {
    fuzz("sip_message", &["rfc4475"], sip_message);
}

#[test]
fn tcp_stream_framing_survives_fuzzing() {
    fuzz("stream", &["fuzz/sip_message", "rfc4475"], stream);
}

#[test]
fn uris_and_addresses_survive_fuzzing_and_print_back_the_same() {
    fuzz("uri", &[], uri);
}

#[test]
fn sipfrag_bodies_survive_fuzzing() {
    fuzz("sipfrag", &[], sipfrag_body);
}

#[test]
fn refer_to_and_replaces_survive_fuzzing_and_print_back_the_same() {
    fuzz("refer_to", &["fuzz/uri"], refer_to_target);
}

#[test]
fn digest_challenges_and_answers_survive_fuzzing() {
    fuzz("digest", &[], digest);
}

#[test]
fn tokens_survive_fuzzing() {
    fuzz("token", &[], token);
}

#[test]
fn sdp_offers_survive_fuzzing() {
    fuzz("sdp", &[], sdp);
}

#[test]
fn agent_command_lines_survive_fuzzing() {
    fuzz("agent_command", &[], agent_command);
}
