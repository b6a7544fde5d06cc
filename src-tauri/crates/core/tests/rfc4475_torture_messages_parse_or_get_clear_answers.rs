//! RFC 4475's torture messages, byte for byte as the RFC's archive ships them
//! (`tests/rfc4475/NAME.dat`): every valid one parses and reads as the RFC says; every
//! invalid one is refused by the parser or by `Request::validate` (which the switchboard and
//! the agent answer 400), or gets the answer the RFC asks for from
//! `Message::reply_to_unparsable` (400, 416, 505) — and nothing panics.

use hookflash_core::auth::DigestResponse;
use hookflash_core::sip::{
    next_stream_frame, unescape, Message, Method, NameAddr, Request, Response, StreamFrame, Via,
};

/// Every message of RFC 4475 §3, by the name of its file in the RFC's archive.
const ALL: &[&str] = &[
    // §3.1.1 valid
    "wsinv",
    "intmeth",
    "esc01",
    "escnull",
    "esc02",
    "lwsdisp",
    "longreq",
    "dblreq",
    "semiuri",
    "transports",
    "mpart01",
    "unreason",
    "noreason",
    // §3.1.2 invalid
    "badinv01",
    "clerr",
    "ncl",
    "scalar02",
    "scalarlg",
    "quotbal",
    "ltgtruri",
    "lwsruri",
    "lwsstart",
    "trws",
    "escruri",
    "baddate",
    "regbadct",
    "badaspec",
    "baddn",
    "badvers",
    "mismatch01",
    "mismatch02",
    "bigcode",
    // §3.2 transaction layer
    "badbranch",
    // §3.3 application layer
    "insuf",
    "unkscm",
    "novelsc",
    "unksm2",
    "bext01",
    "invut",
    "regaut01",
    "multi01",
    "mcl01",
    "bcast",
    "zeromf",
    "cparam01",
    "cparam02",
    "regescrt",
    "sdp01",
    // §3.4 backward compatibility
    "inv2543",
];

fn load(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/rfc4475/{name}.dat", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("the corpus holds {path}: {e}"))
}

fn request(name: &str) -> Request {
    match Message::parse(&load(name)) {
        Ok(Message::Request(r)) => r,
        Ok(Message::Response(r)) => panic!("{name} is a request, read as a {} response", r.status),
        Err(e) => panic!("{name} is a well-formed request (RFC 4475) but was refused: {e}"),
    }
}

/// A request the RFC calls valid: it parses and passes the checks every handler relies on.
fn valid_request(name: &str) -> Request {
    let r = request(name);
    if let Err(e) = r.validate() {
        panic!("{name} is a well-formed request (RFC 4475) but fails validation: {e}");
    }
    r
}

fn response(name: &str) -> Response {
    match Message::parse(&load(name)) {
        Ok(Message::Response(r)) => r,
        Ok(Message::Request(r)) => panic!("{name} is a response, read as a {} request", r.method),
        Err(e) => panic!("{name} is a well-formed response (RFC 4475) but was refused: {e}"),
    }
}

/// The status and reason `reply_to_unparsable` gives a message the parser refuses.
fn answer_to_unparsable(name: &str) -> Option<(u16, String)> {
    let data = load(name);
    let error = match Message::parse(&data) {
        Ok(_) => panic!("{name} must not parse: RFC 4475 calls it malformed"),
        Err(e) => e,
    };
    Message::reply_to_unparsable(&data, &error.0).map(|r| (r.status, r.reason))
}

/// Why `validate` refuses a request that parses (the switchboard and the agent answer 400).
fn validation_error(name: &str) -> String {
    match request(name).validate() {
        Ok(()) => panic!("{name} must fail validation: RFC 4475 wants it answered 400"),
        Err(e) => e.0,
    }
}

fn vias(r: &Request) -> Vec<Via> {
    r.headers
        .get_all("Via")
        .iter()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|e| panic!("Via {v:?} is well-formed: {e}"))
        })
        .collect()
}

/// Headers without Content-Length, which printing moves to the end.
fn without_length(m: &Message) -> Vec<(String, String)> {
    m.headers()
        .0
        .iter()
        .filter(|(n, _)| !["content-length", "l"].contains(&n.to_ascii_lowercase().as_str()))
        .cloned()
        .collect()
}

#[test]
fn the_corpus_is_every_message_of_the_rfc_byte_for_byte() {
    let dir = format!("{}/tests/rfc4475", env!("CARGO_MANIFEST_DIR"));
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .expect("the corpus directory exists")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".dat").map(str::to_owned))
        .collect();
    on_disk.sort();
    let mut expected: Vec<String> = ALL.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(
        on_disk, expected,
        "the corpus holds the 49 messages of RFC 4475 §3, no more, no fewer"
    );
    // With CRLFs intact each message ends exactly where its Content-Length says (clerr and
    // dblreq are built not to; baddn has no blank line; inv2543 and mcl01 no single length).
    for name in ALL {
        let data = load(name);
        let Some(head_end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
            assert_eq!(
                *name, "baddn",
                "only baddn lacks the blank line in the RFC's archive"
            );
            continue;
        };
        let head = String::from_utf8_lossy(&data[..head_end]);
        let lengths: Vec<usize> = head
            .split("\r\n")
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| {
                ["content-length", "l"].contains(&n.trim().to_ascii_lowercase().as_str())
            })
            .filter_map(|(_, v)| v.trim().parse().ok())
            .collect();
        if let ([n], false) = (lengths.as_slice(), ["clerr", "dblreq"].contains(name)) {
            assert_eq!(
                data.len() - head_end - 4,
                *n,
                "{name}: the body is exactly Content-Length bytes, so no CRLF was lost or added"
            );
        }
    }
}

#[test]
fn nothing_in_the_corpus_panics_the_parser_the_framer_or_the_accessors() {
    for name in ALL {
        let data = load(name);
        match Message::parse(&data) {
            Ok(Message::Request(r)) => {
                let _ = (
                    r.validate(),
                    r.from(),
                    r.to(),
                    r.cseq(),
                    r.top_via(),
                    r.contact(),
                );
                let again = Message::parse(&Message::Request(r.clone()).to_bytes());
                assert!(
                    again.is_ok(),
                    "{name}: what we parse we print in a form we parse again"
                );
            }
            Ok(Message::Response(r)) => {
                let _ = (r.from(), r.to(), r.cseq(), r.top_via(), r.contact());
            }
            Err(e) => {
                let _ = Message::reply_to_unparsable(&data, &e.0);
            }
        }
        if let StreamFrame::Message(n) = next_stream_frame(&data) {
            assert!(n <= data.len(), "{name}: a frame lies within the buffer");
        }
    }
}

#[test]
fn valid_messages_print_and_parse_back_to_the_same_message() {
    for name in [
        "wsinv",
        "intmeth",
        "esc01",
        "escnull",
        "esc02",
        "lwsdisp",
        "longreq",
        "dblreq",
        "semiuri",
        "transports",
        "mpart01",
        "unreason",
        "noreason",
    ] {
        let m = Message::parse(&load(name)).unwrap_or_else(|e| panic!("{name} parses: {e}"));
        let again = Message::parse(&m.to_bytes())
            .unwrap_or_else(|e| panic!("{name} printed parses again: {e}"));
        assert_eq!(
            without_length(&again),
            without_length(&m),
            "{name}: printing keeps every header, in order"
        );
        match (&m, &again) {
            (Message::Request(a), Message::Request(b)) => {
                assert_eq!(
                    (&a.method, &a.uri, &a.body),
                    (&b.method, &b.uri, &b.body),
                    "{name}: printing keeps the Request-Line and the body"
                );
            }
            (Message::Response(a), Message::Response(b)) => {
                assert_eq!(
                    (a.status, &a.reason, &a.body),
                    (b.status, &b.reason, &b.body),
                    "{name}: printing keeps the Status-Line and the body"
                );
            }
            _ => panic!("{name}: printing must not turn a request into a response"),
        }
    }
}

#[test]
fn wsinv_a_short_tortuous_invite_reads_right() {
    // §3.1.1.1: line folding all over, LWS around every separator, compact and odd-case
    // names, escaped quotes, an empty Subject, leading zeros: "all elements should treat this
    // as a well-formed request".
    let r = valid_request("wsinv");
    assert_eq!(r.method, Method::Invite, "the method is INVITE");
    assert_eq!(r.uri.user.as_deref(), Some("vivekg"), "Request-URI user");
    assert_eq!(r.uri.host, "chair-dnrc.example.com", "Request-URI host");
    assert_eq!(
        r.uri.param("unknownparam"),
        Some(None),
        "an unknown URI parameter without a value is kept"
    );
    let to = r.to().expect("the folded To reads");
    assert_eq!(
        to.tag(),
        Some("1918181833n"),
        "To tag, LWS around '=' and ';'"
    );
    assert_eq!(
        to.uri.aor(),
        "sip:vivekg@chair-dnrc.example.com",
        "To in addr-spec form"
    );
    let from = r.from().expect("the folded From reads");
    assert_eq!(
        from.display.as_deref(),
        Some("J Rosenberg \\\""),
        "quoted-pairs in the display name unescape to a backslash and a quote"
    );
    assert_eq!(
        from.tag(),
        Some("98asjd8"),
        "From tag on its own folded lines"
    );
    assert_eq!(from.uri.aor(), "sip:jdrosen@example.com", "From URI");
    assert_eq!(
        r.headers.get("Max-Forwards").map(str::parse::<u32>),
        Some(Ok(68)),
        "Max-Forwards 0068, odd case, leading zeros"
    );
    assert_eq!(r.call_id().unwrap(), "wsinv.ndaksdj@192.0.2.1", "Call-ID");
    let cseq = r.cseq().expect("the folded CSeq reads");
    assert_eq!(
        (cseq.seq, cseq.method),
        (9, Method::Invite),
        "CSeq 0009 folded before INVITE"
    );
    assert_eq!(
        r.body.len(),
        150,
        "Content-Length with LWS before the colon"
    );
    let all_vias = vias(&r);
    let read: Vec<(&str, &str, Option<&str>)> = all_vias
        .iter()
        .map(|v| (v.transport.as_str(), v.host.as_str(), v.branch()))
        .collect();
    assert_eq!(
        read,
        [
            ("UDP", "192.0.2.2", Some("390skdjuw")),
            ("TCP", "spindle.example.com", Some("z9hG4bK9ikj8")),
            ("UDP", "192.168.255.111", Some("z9hG4bK30239")),
        ],
        "three Vias: one folded long form, two comma-separated in a folded compact one"
    );
    assert_eq!(
        r.headers.get("Subject"),
        Some(""),
        "the empty Subject, compact 's'"
    );
    assert_eq!(
        r.headers.get("NewFangledHeader"),
        Some("newfangled value continued newfangled value"),
        "an unknown header folds into one value"
    );
    assert_eq!(
        r.headers.get("UnknownHeaderWithUnusualValue"),
        Some(";;,,;;,;"),
        "an unknown header's value is kept as it is, not parsed"
    );
    assert_eq!(
        r.headers.get_all("Route"),
        ["<sip:services.example.com;lr;unknownwith=value;unknown-no-value>"],
        "the folded Route"
    );
    let contact = r.contact().expect("the compact 'm' Contact reads");
    assert_eq!(
        contact.display.as_deref(),
        Some("Quoted string \"\""),
        "escaped quotes inside the quoted display name"
    );
    assert_eq!(
        contact.param("newparam"),
        Some("newvalue"),
        "folded parameter value"
    );
    assert!(
        contact
            .params
            .iter()
            .any(|(n, v)| n == "secondparam" && v.is_none()),
        "a header parameter without a value is kept"
    );
    assert_eq!(contact.param("q"), Some("0.33"), "q with LWS around '='");
}

#[test]
fn intmeth_unusual_characters_in_every_field_read_right() {
    // §3.1.1.2: "A method of IN%56ITE is an unknown method"; the Request-URI holds unusual
    // but legal characters, a '?' and a password among them.
    let r = valid_request("intmeth");
    let method = "!interesting-Method0123456789_*+`.%indeed'~";
    assert_eq!(
        r.method,
        Method::Other(method.into()),
        "an extension method, as written"
    );
    assert_eq!(
        r.uri.user.as_deref(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"),
        "the userinfo runs to the '@', its '?' and ';' included"
    );
    assert_eq!(r.uri.host, "example.com", "the host follows the '@'");
    assert!(
        r.uri.params.is_empty() && r.uri.headers.is_empty(),
        "no URI parameters or headers: those characters were the user's"
    );
    assert_eq!(
        r.top_via().unwrap().branch(),
        Some("z9hG4bK-.!%66*_+`'~"),
        "a branch of every token character"
    );
    let to = r.to().expect("the To reads");
    assert_eq!(
        to.display.as_deref(),
        Some("BEL:\u{7} NUL:\u{0} DEL:\u{7f}"),
        "quoted-pairs for BEL, NUL and DEL"
    );
    assert_eq!(
        to.uri.user.as_deref(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"),
        "the To URI's user"
    );
    let from = r.from().expect("the From reads");
    assert_eq!(
        from.display.as_deref(),
        Some("token1~` token2'+_ token3*%!.-"),
        "an unquoted display name of tokens"
    );
    assert_eq!(
        from.tag(),
        Some("_token~1'+`*%!-."),
        "a tag of token characters"
    );
    assert_eq!(
        from.param("fromParam''~+*_!.-%"),
        Some("работающий"),
        "a quoted UTF-8 parameter value"
    );
    assert_eq!(
        r.call_id().unwrap(),
        "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{",
        "a Call-ID of word characters: no escapes, no quoting, no grouping"
    );
    let cseq = r.cseq().unwrap();
    assert_eq!(
        (cseq.seq, cseq.method),
        (139122385, Method::Other(method.into())),
        "CSeq names the same extension method"
    );
    assert_eq!(
        r.headers.get("extensionHeader-!.%*+_`'~"),
        Some("\u{feff}大停電"),
        "an extension header with token characters in its name and a UTF-8 value"
    );
}

#[test]
fn escaped_uris_keep_their_escapes_and_unescape_to_what_they_mean() {
    // §3.1.1.3 esc01: escaped characters in URIs; the Request-URI user is "sips:user@…".
    let r = valid_request("esc01");
    assert_eq!(
        r.uri.host, "example.net",
        "an escaped '@' does not end the user part"
    );
    assert_eq!(
        unescape(r.uri.user.as_deref().unwrap()),
        "sips:user@example.com",
        "the user unescapes to what it means"
    );
    assert_eq!(
        unescape(r.to().unwrap().uri.user.as_deref().unwrap()),
        "user",
        "%75se%72 is user"
    );
    assert_eq!(
        unescape(r.from().unwrap().uri.user.as_deref().unwrap()),
        "I have spaces",
        "escaped spaces"
    );
    let contact = r.contact().expect("the folded Contact reads");
    assert_eq!(
        unescape(contact.uri.user.as_deref().unwrap()),
        "caller",
        "cal%6Cer"
    );
    assert_eq!(
        contact.uri.param("%6C%72"),
        Some(None),
        "an escaped URI parameter name (lr) is kept as written"
    );
    assert_eq!(
        contact
            .uri
            .param("n%61me")
            .flatten()
            .map(unescape)
            .as_deref(),
        Some("value%41"),
        "escaped parameter value"
    );

    // §3.1.1.4 escnull: %00 in user parts.
    let r = valid_request("escnull");
    assert_eq!(r.method, Method::Register, "escnull is a REGISTER");
    assert_eq!(
        unescape(r.to().unwrap().uri.user.as_deref().unwrap()),
        "null-\0-null",
        "an escaped NUL"
    );
    let users: Vec<String> = r
        .headers
        .get_all("Contact")
        .iter()
        .map(|c| unescape(c.parse::<NameAddr>().unwrap().uri.user.as_deref().unwrap()))
        .collect();
    assert_eq!(users, ["\0", "\0\0"], "two Contacts of escaped NULs");

    // §3.1.1.5 esc02: '%' is no escape in a method or a header name.
    let r = valid_request("esc02");
    assert_eq!(
        r.method,
        Method::Other("RE%47IST%45R".into()),
        "RE%47IST%45R is an unknown method, not REGISTER"
    );
    assert_eq!(
        r.to().unwrap().display.as_deref(),
        Some("%Z%45"),
        "a display name is not unescaped"
    );
    assert_eq!(
        r.top_via().unwrap().branch(),
        Some("z9hG4bK209%fzsnel234"),
        "'%' in a branch"
    );
    assert_eq!(
        r.headers.get_all("Contact").len(),
        2,
        "C%6Fntact is an extension header, not a third Contact"
    );
    assert!(r.headers.get("C%6Fntact").is_some(), "and it is kept");
}

#[test]
fn display_names_long_fields_and_many_vias_read_right() {
    // §3.1.1.6 lwsdisp: no LWS between display name and '<'.
    let from = valid_request("lwsdisp").from().unwrap();
    assert_eq!(
        from.display.as_deref(),
        Some("caller"),
        "display name right before '<'"
    );
    assert_eq!(from.tag(), Some("323"), "tag");

    // §3.1.1.7 longreq: long values everywhere, 34 Vias in every spelling of the name.
    let r = valid_request("longreq");
    let to = r.to().unwrap();
    assert!(
        to.display.as_deref().is_some_and(
            |d| d.starts_with("I have a user name of extreme") && d.ends_with("proportion")
        ),
        "the long quoted display name"
    );
    assert_eq!(to.uri.port, Some(6000), "the To URI's port");
    assert_eq!(to.uri.params.len(), 3, "three long URI parameters");
    assert_eq!(
        to.uri
            .params
            .last()
            .map(|(n, v)| (n.ends_with("ParameterNameWithNoValue"), v.is_none())),
        Some((true, true)),
        "the last one has no value"
    );
    let from = r.from().unwrap();
    assert!(
        from.tag().is_some_and(|t| t.len() > 150),
        "the long From tag (compact 'F')"
    );
    let all_vias = vias(&r);
    assert_eq!(all_vias.len(), 34, "Via, v, V, ViA, VIA, ... all count");
    assert_eq!(
        all_vias[0].host, "sip33.example.com",
        "the top Via is the first written"
    );
    assert_eq!(all_vias[33].host, "host.example.com", "the last Via");
    assert_eq!(
        all_vias[33].param("received"),
        Some(Some("192.0.2.5")),
        "received"
    );
    assert!(
        all_vias[33]
            .branch()
            .is_some_and(|b| b.starts_with("verylong") && b.len() > 200),
        "the long branch"
    );
    assert!(r.call_id().unwrap().len() > 100, "the long Call-ID");
    assert_eq!(r.body.len(), 150, "compact 'l' length");

    // §3.1.1.8 dblreq: only the first message in the datagram counts.
    let r = valid_request("dblreq");
    assert_eq!(r.method, Method::Register, "the REGISTER is the message");
    assert_eq!(
        r.call_id().unwrap(),
        "dblreq.0ha0isndaksdj99sdfafnl3lk233412",
        "the REGISTER's Call-ID (compact 'I')"
    );
    assert!(
        r.body.is_empty(),
        "the INVITE after Content-Length 0 is not a body"
    );

    // §3.1.1.9 semiuri: the ';' belongs to the user part.
    let r = valid_request("semiuri");
    assert_eq!(
        r.uri.user.as_deref(),
        Some("user;par=u%40example.net"),
        "the user part holds the ';'"
    );
    assert_eq!(r.uri.host, "example.com", "the host");
    assert!(r.uri.params.is_empty(), "no URI parameters");
    assert_eq!(
        r.headers.get("Accept"),
        Some(
            "application/sdp, application/pkcs7-mime, multipart/mixed, multipart/signed, \
message/sip, message/sipfrag"
        ),
        "the Accept list folded over three lines"
    );

    // §3.1.1.10 transports: transports we do not speak still parse.
    let transports: Vec<String> = vias(&valid_request("transports"))
        .into_iter()
        .map(|v| v.transport)
        .collect();
    assert_eq!(
        transports,
        ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"],
        "every Via transport read"
    );
}

#[test]
fn a_binary_body_and_unusual_reason_phrases_read_right() {
    // §3.1.1.11 mpart01: a multipart body with binary parts.
    let r = valid_request("mpart01");
    assert_eq!(r.method, Method::Message, "MESSAGE");
    assert_eq!(r.body.len(), 553, "the whole binary body");
    assert!(
        r.body.starts_with(b"--7a9cbec02ceef655\r\n")
            && r.body.ends_with(b"--7a9cbec02ceef655--\r\n"),
        "the body runs from the first boundary to the closing one"
    );
    assert!(
        std::str::from_utf8(&r.body).is_err(),
        "the body is binary, and that is fine"
    );

    // §3.1.1.12 unreason: a UTF-8 reason phrase.
    let resp = response("unreason");
    assert_eq!(resp.status, 200, "the status");
    assert_eq!(
        resp.reason, "= 2**3 * 5**2 но сто девяносто девять - простое",
        "the reason phrase as written"
    );
    assert_eq!(resp.body.len(), 154, "the body");

    // §3.1.1.13 noreason: no reason phrase at all.
    let resp = response("noreason");
    assert_eq!(
        (resp.status, resp.reason.as_str()),
        (100, ""),
        "an empty reason"
    );
}

#[test]
fn syntactically_invalid_requests_are_answered_400_505_or_refused() {
    // §3.1.2.1 badinv01: empty Via parameters and list entries (";;,;,,").
    assert!(
        validation_error("badinv01").contains("Via"),
        "the Via with empty parameters is what is wrong"
    );
    // §3.1.2.2 clerr, §3.1.2.3 ncl: Content-Length too large, negative.
    for name in ["clerr", "ncl"] {
        assert_eq!(
            answer_to_unparsable(name).map(|(s, _)| s),
            Some(400),
            "{name}: over UDP a bad Content-Length is a 400"
        );
    }
    // §3.1.2.4 scalar02: a CSeq beyond 32 bits.
    assert!(
        validation_error("scalar02").contains("CSeq"),
        "the overlarge CSeq is the 400's cause"
    );
    // §3.1.2.6 quotbal: an unterminated quote in To.
    assert!(
        validation_error("quotbal").contains("quoted"),
        "the unterminated quoted string is the 400's cause"
    );
    // §3.1.2.7–10: <> around the Request-URI, LWS in it, extra SP in the Request-Line.
    for name in ["ltgtruri", "lwsruri", "lwsstart", "trws"] {
        let (status, reason) = answer_to_unparsable(name)
            .unwrap_or_else(|| panic!("{name}: a request with Via and CSeq is answered"));
        assert_eq!(
            status, 400,
            "{name}: a malformed Request-Line is a 400, not a 416 or 505"
        );
        assert!(
            reason.starts_with("Bad Request (") && reason.len() > "Bad Request ()".len(),
            "{name}: the reason says what is wrong: {reason:?}"
        );
    }
    // §3.1.2.11 escruri: headers are not allowed in a Request-URI.
    assert!(
        validation_error("escruri").contains("Request-URI"),
        "the escaped Route in the Request-URI is refused"
    );
    // §3.1.2.16 badvers: SIP/7.0.
    assert_eq!(
        answer_to_unparsable("badvers").map(|(s, _)| s),
        Some(505),
        "another SIP version is a 505"
    );
    // §3.1.2.17–18 mismatch01/02: CSeq names another method (400; for 02 501 is preferred
    // but 400 acceptable).
    for name in ["mismatch01", "mismatch02"] {
        assert!(
            validation_error(name).contains("CSeq"),
            "{name}: the CSeq method mismatch is a 400"
        );
    }
    // §3.1.2.15 baddn: the RFC's file has no blank line, so it cannot parse at all; with one,
    // the unquoted display names with commas are still refused.
    assert_eq!(
        answer_to_unparsable("baddn").map(|(s, _)| s),
        Some(400),
        "baddn as shipped is a 400"
    );
    let mut with_end = load("baddn");
    with_end.extend_from_slice(b"\r\n");
    let Ok(Message::Request(r)) = Message::parse(&with_end) else {
        panic!("baddn with its blank line parses as a request")
    };
    assert!(
        r.validate().is_err() && r.from().is_err() && r.to().is_err(),
        "Bell, Alexander and Watson, Thomas need quotes"
    );
}

#[test]
fn invalid_messages_the_rfc_lets_us_accept_are_read_safely() {
    // §3.1.2.12 baddate: a non-GMT Date may be ignored; we never read Date and keep it as is.
    let r = valid_request("baddate");
    assert_eq!(
        r.headers.get("Date"),
        Some("Fri, 01 Jan 2010 16:00:00 EST"),
        "a proxy forwards the Date unaltered"
    );
    // §3.1.2.13 regbadct: a Contact URI with headers outside <> is not read as a URI with
    // a Route in it; the registrar answers 400 Bad Contact.
    let r = valid_request("regbadct");
    assert!(
        r.contact().is_none(),
        "the ambiguous addr-spec Contact is not read"
    );
    // §3.1.2.14 badaspec: spaces inside <> may be ignored.
    let to = valid_request("badaspec").to().unwrap();
    assert_eq!(
        to.uri.aor(),
        "sip:t.watson@example.org",
        "the URI inside the spaced <> reads whole"
    );
    assert_eq!(
        to.display.as_deref(),
        Some("Watson, Thomas"),
        "the quoted display name"
    );
}

#[test]
fn responses_the_rfc_says_to_drop_cannot_be_matched_or_do_not_parse() {
    // §3.1.2.5 scalarlg: a CSeq beyond 32 bits matches no transaction: dropped.
    let resp = response("scalarlg");
    assert!(
        resp.cseq().is_err(),
        "a response whose CSeq does not read cannot match a transaction"
    );
    // §3.1.2.19 bigcode: status 4294967301.
    let data = load("bigcode");
    let error = Message::parse(&data).expect_err("a status above 699 does not parse");
    assert!(
        Message::reply_to_unparsable(&data, &error.0).is_none(),
        "a response is never answered"
    );
    // §3.3.10 bcast: well formed; the broadcast Via is the proxy's to refuse.
    let resp = response("bcast");
    let hosts: Vec<String> = resp
        .headers
        .get_all("Via")
        .iter()
        .map(|v| v.parse::<Via>().unwrap().host)
        .collect();
    assert_eq!(
        hosts,
        ["192.0.2.198", "255.255.255.255"],
        "both Vias read, the broadcast one second"
    );
}

#[test]
fn transaction_and_application_layer_cases_parse_and_carry_what_the_handlers_need() {
    // §3.2.1 badbranch: a bare magic cookie; parsers must not break.
    let r = valid_request("badbranch");
    assert_eq!(
        r.top_via().unwrap().branch(),
        Some("z9hG4bK"),
        "the bare cookie"
    );

    // §3.3.1 insuf: no Call-ID, From, To: a 400.
    assert!(
        validation_error("insuf").contains("missing"),
        "a missing mandatory header fails validation"
    );
    // §3.3.2 unkscm, §3.3.3 novelsc: unknown schemes in the Request-URI: 416.
    for name in ["unkscm", "novelsc"] {
        assert_eq!(
            answer_to_unparsable(name).map(|(s, _)| s),
            Some(416),
            "{name}: Unsupported URI Scheme"
        );
    }
    // §3.3.4 unksm2: other schemes in To, From, Contact: parses; a registrar answers 400.
    let r = request("unksm2");
    assert!(
        r.validate().is_err(),
        "a REGISTER's To must be a SIP URI: 400"
    );
    // §3.3.5 bext01: the option tags a 420 lists.
    let r = valid_request("bext01");
    assert_eq!(
        r.headers.get_all("Proxy-Require"),
        ["noProxiesSupportThis", "norDoAnyProxiesSupportThis"],
        "Proxy-Require's tags, for a proxy's 420 Unsupported"
    );
    assert_eq!(
        r.headers.get_all("Require"),
        ["nothingSupportsThis", "nothingSupportsThisEither"],
        "Require's tags, for a UAS's 420 Unsupported"
    );
    // §3.3.6 invut: an unknown body type is the endpoint's business.
    let r = valid_request("invut");
    assert_eq!(
        r.headers.get("Content-Type"),
        Some("application/unknownformat"),
        "the unknown type"
    );
    assert_eq!(r.body.len(), 40, "the body");
    // §3.3.7 regaut01: an Authorization of an unknown scheme is no digest answer.
    let r = valid_request("regaut01");
    let auth = r
        .headers
        .get("Authorization")
        .expect("the Authorization is kept");
    assert!(
        auth.parse::<DigestResponse>().is_err(),
        "an unknown scheme is not taken for digest: the registrar challenges"
    );
    // §3.3.8 multi01: two of the single-valued headers: 400.
    assert!(
        validation_error("multi01").contains("more than one"),
        "duplicated From/To/Call-ID/CSeq/Max-Forwards are refused"
    );
    // §3.3.9 mcl01: two Content-Lengths: 400 over UDP, and a stream cannot be framed.
    assert_eq!(
        answer_to_unparsable("mcl01").map(|(s, _)| s),
        Some(400),
        "conflicting lengths are a 400"
    );
    assert!(
        matches!(next_stream_frame(&load("mcl01")), StreamFrame::Invalid(_)),
        "over TCP conflicting lengths close the connection"
    );
    assert!(
        matches!(next_stream_frame(&load("ncl")), StreamFrame::Invalid(_)),
        "over TCP a negative length closes the connection"
    );
    assert_eq!(
        next_stream_frame(&load("clerr")),
        StreamFrame::Incomplete,
        "over TCP a length beyond the data waits for more"
    );
    // §3.3.11 zeromf: Max-Forwards 0 is legal (a proxy answers 483).
    assert_eq!(
        valid_request("zeromf").headers.get("Max-Forwards"),
        Some("0"),
        "Max-Forwards zero"
    );
    // §3.3.12 cparam01: outside <> the parameter is the Contact's, not the URI's.
    let c = valid_request("cparam01")
        .contact()
        .expect("the Contact reads");
    assert!(c.uri.params.is_empty(), "no URI parameter");
    assert!(
        c.params
            .iter()
            .any(|(n, v)| n == "unknownparam" && v.is_none()),
        "unknownparam is a contact parameter"
    );
    // §3.3.13 cparam02: inside <> it is the URI's.
    let c = valid_request("cparam02")
        .contact()
        .expect("the Contact reads");
    assert_eq!(c.uri.param("unknownparam"), Some(None), "a URI parameter");
    assert!(c.params.is_empty(), "no contact parameter");
    // §3.3.14 regescrt: an escaped Route in a bracketed Contact URI is legal.
    let c = valid_request("regescrt")
        .contact()
        .expect("the compact 'M' Contact reads");
    assert_eq!(
        c.uri.headers,
        [("Route".to_owned(), "%3Csip:sip.example.com%3E".to_owned())],
        "the URI header, kept escaped"
    );
    assert_eq!(
        unescape(&c.uri.headers[0].1),
        "<sip:sip.example.com>",
        "and it unescapes"
    );
    // §3.3.15 sdp01: an Accept without SDP is the endpoint's business.
    assert_eq!(
        valid_request("sdp01").headers.get("Accept"),
        Some("text/nobodyKnowsThis"),
        "the Accept"
    );
    // §3.4.1 inv2543: RFC 2543 syntax: no branch, no From tag, no Content-Length, no
    // Max-Forwards; accepted for backward compatibility.
    let r = valid_request("inv2543");
    assert_eq!(r.top_via().unwrap().branch(), None, "no branch");
    assert_eq!(r.from().unwrap().tag(), None, "no From tag");
    assert!(r.headers.get("Max-Forwards").is_none(), "no Max-Forwards");
    assert!(
        r.body.starts_with(b"v=0\r\n") && r.body.ends_with(b"m=audio 49217 RTP/AVP 0\r\n"),
        "without a Content-Length the body is the rest of the datagram"
    );
}
