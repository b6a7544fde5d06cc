//! A raw SIP user agent for driving the switchboard over real loopback sockets; core agents
//! with tone microphones and capture ears ([`agents`]); a tiny HTTP client ([`http`]).
#![allow(dead_code)]

pub mod agents;
pub mod http;

use std::net::SocketAddr;
use std::time::Duration;

use hookflash_core::auth::{authorization, Challenge, Scope, Token};
use hookflash_core::sip::{
    new_branch, new_call_id, new_tag, Message, Method, NameAddr, Request, Response, Transport,
    TransportEvent, TransportKind, Uri,
};
use hookflash_switchboard::{Config, Switchboard, SwitchboardHandle};
use tokio::sync::mpsc::UnboundedReceiver;

pub const SECRET: &str = "test-secret";
pub const WAIT: Duration = Duration::from_secs(5);

pub async fn switchboard() -> SwitchboardHandle {
    switchboard_with(|_| {}).await
}

pub async fn switchboard_with(tweak: impl FnOnce(&mut Config)) -> SwitchboardHandle {
    let mut c = Config::local(SECRET);
    tweak(&mut c);
    Switchboard::start(c)
        .await
        .expect("the switchboard starts on loopback")
}

/// A message as it arrived.
pub struct Received {
    pub message: Message,
    pub source: SocketAddr,
    pub transport: TransportKind,
}

impl Received {
    pub fn request(&self) -> &Request {
        match &self.message {
            Message::Request(r) => r,
            Message::Response(r) => panic!("expected a request, got {} {}", r.status, r.reason),
        }
    }
    pub fn response(&self) -> &Response {
        match &self.message {
            Message::Response(r) => r,
            Message::Request(r) => panic!("expected a response, got {}", r.method),
        }
    }
}

/// One user agent: a transport of its own, talking to the switchboard over `kind`.
pub struct Ua {
    pub user: String,
    pub kind: TransportKind,
    pub transport: Transport,
    pub events: UnboundedReceiver<TransportEvent>,
    pub server: SocketAddr,
    pub domain: String,
    pub token: Token,
    pub password: Option<String>,
    pub reg_call_id: String,
    pub cseq: u32,
}

impl Ua {
    pub async fn new(user: &str, kind: TransportKind, sb: &SwitchboardHandle) -> Ua {
        let token = sb.issue_token(user, Duration::from_secs(3600));
        Ua::at(user, kind, sb.local_addr(), sb.domain(), token).await
    }

    /// A UA for a switchboard at `server` serving `domain`, signing in with `token`.
    pub async fn at(
        user: &str,
        kind: TransportKind,
        server: SocketAddr,
        domain: &str,
        token: Token,
    ) -> Ua {
        let (transport, events) = Transport::bind("127.0.0.1".parse().unwrap(), 0, true)
            .await
            .expect("a UA binds a loopback port");
        Ua {
            user: user.to_owned(),
            kind,
            transport,
            events,
            server,
            domain: domain.to_owned(),
            token,
            password: None,
            reg_call_id: new_call_id(),
            cseq: 0,
        }
    }

    pub fn port(&self) -> u16 {
        self.transport.local_udp().port()
    }

    pub fn aor(&self) -> String {
        format!("sip:{}@{}", self.user, self.domain)
    }

    pub fn contact_uri(&self) -> String {
        match self.kind {
            TransportKind::Udp => format!("sip:{}@127.0.0.1:{}", self.user, self.port()),
            kind => format!(
                "sip:{}@127.0.0.1:{};transport={}",
                self.user,
                self.port(),
                kind.param()
            ),
        }
    }

    pub fn via(&self) -> String {
        format!(
            "SIP/2.0/{} 127.0.0.1:{};branch={};rport",
            self.kind.as_str(),
            self.port(),
            new_branch()
        )
    }

    /// The digest credentials: the token's, unless a password was set.
    pub fn credentials(&self) -> (String, String) {
        match &self.password {
            Some(p) => (self.user.clone(), p.clone()),
            None => (
                self.token.sip_username(),
                self.token
                    .password(Scope::Sip)
                    .expect("the token opens SIP")
                    .to_owned(),
            ),
        }
    }

    /// A new out-of-dialog request from this UA.
    pub fn request(&mut self, method: Method, ruri: &str, to: &str) -> Request {
        self.cseq += 1;
        let mut r = Request::new(method.clone(), ruri.parse().expect("test URI parses"));
        r.headers.push("Via", self.via());
        r.headers.push("Max-Forwards", "70");
        r.headers
            .push("From", format!("<{}>;tag={}", self.aor(), new_tag()));
        r.headers.push("To", format!("<{to}>"));
        r.headers.push("Call-ID", new_call_id());
        r.headers.push("CSeq", format!("{} {method}", self.cseq));
        r.headers
            .push("Contact", format!("<{}>", self.contact_uri()));
        r
    }

    pub async fn send(&self, msg: impl Into<Message>) {
        let msg = msg.into();
        self.transport
            .send(self.kind, self.server, &msg)
            .await
            .expect("send to the switchboard");
    }

    pub async fn send_raw(&self, bytes: &[u8]) {
        self.transport
            .send_raw(self.kind, self.server, bytes.to_vec())
            .await
            .expect("send raw bytes to the switchboard");
    }

    /// Reply to a request that came from `from` over the same transport.
    pub async fn reply_to(&self, from: &Received, resp: Response) {
        self.transport
            .send(from.transport, from.source, &resp.into())
            .await
            .expect("reply to the switchboard");
    }

    /// The next message for which `pred` holds; others are skipped. Panics after [`WAIT`].
    pub async fn next_where(&mut self, what: &str, pred: impl Fn(&Message) -> bool) -> Received {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let ev = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("{}: timed out waiting for {what}", self.user))
                .unwrap_or_else(|| panic!("{}: transport closed waiting for {what}", self.user));
            if let TransportEvent::Message {
                message,
                source,
                transport,
            } = ev
            {
                if pred(&message) {
                    return Received {
                        message,
                        source,
                        transport,
                    };
                }
            }
        }
    }

    pub async fn next_request(&mut self, method: Method) -> Received {
        let what = format!("a {method} request");
        self.next_where(
            &what,
            |m| matches!(m, Message::Request(r) if r.method == method),
        )
        .await
    }

    /// The next final (or, with `provisional`, non-100) response to a `method` request.
    pub async fn next_response(&mut self, method: Method, provisional: bool) -> Received {
        let what = format!("a response to {method}");
        self.next_where(&what, |m| match m {
            Message::Response(r) => {
                r.cseq().is_ok_and(|c| c.method == method)
                    && if provisional {
                        r.status > 100
                    } else {
                        r.status >= 200
                    }
            }
            _ => false,
        })
        .await
    }

    /// Nothing at all arrives for `d`.
    pub async fn expect_silence(&mut self, d: Duration, why: &str) {
        if let Ok(Some(ev)) = tokio::time::timeout(d, self.events.recv()).await {
            panic!("{}: expected nothing ({why}), got {ev:?}", self.user);
        }
    }

    /// Send `req`; when it is challenged (401/407), ACK an INVITE's challenge and send it again
    /// with credentials. Returns the first final response after that (or the challenge-free one).
    pub async fn send_authenticated(&mut self, req: Request) -> Received {
        let method = req.method.clone();
        self.send(req.clone()).await;
        let first = self.next_response(method.clone(), false).await;
        let resp = first.response().clone();
        if resp.status != 401 && resp.status != 407 {
            return first;
        }
        if method == Method::Invite {
            self.send(ack_for(&req, &resp)).await;
        }
        let header = if resp.status == 401 {
            "WWW-Authenticate"
        } else {
            "Proxy-Authenticate"
        };
        let ch: Challenge = resp
            .headers
            .get(header)
            .expect("a challenge carries its header")
            .parse()
            .expect("the challenge parses");
        let (user, pass) = self.credentials();
        let value = authorization(
            &ch,
            method.as_str(),
            &req.uri.to_string(),
            &user,
            &pass,
            1,
            "0a4f113b",
        );
        let mut again = req;
        self.cseq += 1;
        let _ = again.headers.pop_first("Via");
        again.headers.push_front("Via", self.via());
        again.headers.set("CSeq", format!("{} {method}", self.cseq));
        again.headers.push(
            if header == "WWW-Authenticate" {
                "Authorization"
            } else {
                "Proxy-Authorization"
            },
            value,
        );
        self.send(again).await;
        self.next_response(method, false).await
    }

    pub fn register_request(&mut self, expires: Option<u32>) -> Request {
        let domain = format!("sip:{}", self.domain);
        let aor = self.aor();
        let mut r = self.request(Method::Register, &domain, &aor);
        r.headers.set("Call-ID", self.reg_call_id.clone());
        if let Some(e) = expires {
            r.headers.push("Expires", e.to_string());
        }
        r
    }

    /// REGISTER through the challenge; the final response.
    pub async fn register(&mut self) -> Response {
        let req = self.register_request(Some(600));
        self.send_authenticated(req).await.response().clone()
    }

    /// Call `callee_aor`: the INVITE as sent (after the proxy challenge, not yet answered).
    pub async fn invite(&mut self, callee_aor: &str) -> Request {
        self.invite_with(callee_aor, &[]).await
    }

    /// Like [`Ua::invite`] with extra headers on the INVITE.
    pub async fn invite_with(&mut self, callee_aor: &str, extra: &[(&str, &str)]) -> Request {
        let to = callee_aor
            .split(';')
            .next()
            .unwrap_or(callee_aor)
            .to_owned();
        let mut req = self.request(Method::Invite, callee_aor, &to);
        for (n, v) in extra {
            req.headers.push(*n, *v);
        }
        req.headers.push("Content-Type", "application/sdp");
        req.body = b"v=0\r\n".to_vec();
        self.send(req.clone()).await;
        let challenge = self.next_response(Method::Invite, false).await;
        let resp = challenge.response().clone();
        assert_eq!(
            resp.status, 407,
            "an out-of-dialog INVITE is challenged first"
        );
        self.send(ack_for(&req, &resp)).await;
        let ch: Challenge = resp
            .headers
            .get("Proxy-Authenticate")
            .expect("407 carries Proxy-Authenticate")
            .parse()
            .expect("challenge parses");
        let (user, pass) = self.credentials();
        let value = authorization(&ch, "INVITE", callee_aor, &user, &pass, 1, "c0ffee");
        let mut again = req;
        self.cseq += 1;
        let _ = again.headers.pop_first("Via");
        again.headers.push_front("Via", self.via());
        again.headers.set("CSeq", format!("{} INVITE", self.cseq));
        again.headers.push("Proxy-Authorization", value);
        self.send(again.clone()).await;
        again
    }
}

/// The ACK for a non-2xx final response (same branch, RFC 3261 §17.1.1.3).
pub fn ack_for(req: &Request, resp: &Response) -> Request {
    let mut ack = Request::new(Method::Ack, req.uri.clone());
    ack.headers
        .push("Via", req.headers.get_all("Via")[0].clone());
    ack.headers.push("Max-Forwards", "70");
    ack.headers
        .push("From", req.headers.get("From").unwrap().to_owned());
    ack.headers
        .push("To", resp.headers.get("To").unwrap().to_owned());
    ack.headers
        .push("Call-ID", req.headers.get("Call-ID").unwrap().to_owned());
    let seq = req.cseq().unwrap().seq;
    ack.headers.push("CSeq", format!("{seq} ACK"));
    ack
}

/// The CANCEL for a pending INVITE (same branch).
pub fn cancel_for(req: &Request) -> Request {
    let mut c = Request::new(Method::Cancel, req.uri.clone());
    c.headers.push("Via", req.headers.get_all("Via")[0].clone());
    c.headers.push("Max-Forwards", "70");
    for h in ["From", "To", "Call-ID"] {
        c.headers.push(h, req.headers.get(h).unwrap().to_owned());
    }
    let seq = req.cseq().unwrap().seq;
    c.headers.push("CSeq", format!("{seq} CANCEL"));
    c
}

/// A UAS answer: the response with our tag and Contact.
pub fn answer(ua: &Ua, req: &Request, status: u16, tag: &str) -> Response {
    let mut r = req.response(status, None, Some(tag));
    if (101..300).contains(&status) {
        r.headers.push("Contact", format!("<{}>", ua.contact_uri()));
    }
    r
}

/// The dialog identifiers as one side writes them: its From, its To, the Call-ID.
pub struct DialogIds<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub call_id: &'a str,
}

/// An in-dialog request built from the route set and remote target (RFC 3261 §12.2.1.1).
pub fn in_dialog(
    ua: &mut Ua,
    method: Method,
    target: &Uri,
    route_set: &[String],
    ids: &DialogIds<'_>,
    seq: u32,
) -> Request {
    let mut r = Request::new(method.clone(), target.clone());
    r.headers.push("Via", ua.via());
    r.headers.push("Max-Forwards", "70");
    for route in route_set {
        r.headers.push("Route", route.clone());
    }
    r.headers.push("From", ids.from.to_owned());
    r.headers.push("To", ids.to.to_owned());
    r.headers.push("Call-ID", ids.call_id.to_owned());
    r.headers.push("CSeq", format!("{seq} {method}"));
    r
}

/// The URI of a Contact header value.
pub fn contact_of(headers_value: &str) -> Uri {
    headers_value
        .parse::<NameAddr>()
        .expect("Contact parses")
        .uri
}

/// Poll until `user` has `n` bindings (or panic after [`WAIT`]).
pub async fn wait_bindings(sb: &SwitchboardHandle, user: &str, n: usize, why: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if sb.bindings(user).await.len() == n {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("{why}: {user} never had {n} bindings");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
