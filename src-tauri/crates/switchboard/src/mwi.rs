//! Message waiting indication (RFC 3842): the pure parts of the notifier — which SUBSCRIBE
//! is one, how long it is granted, and the `application/simple-message-summary` body. The
//! subscriptions themselves live in the engine (they send NOTIFYs and need timers).

use crate::mailbox::MailboxCounts;

/// The event package.
pub const EVENT: &str = "message-summary";
/// The body type of its NOTIFYs.
pub const CONTENT_TYPE: &str = "application/simple-message-summary";
/// The shortest subscription granted, in seconds (shorter requests are raised).
pub const MIN_EXPIRES: u32 = 60;
/// The longest subscription granted, in seconds; also the default.
pub const MAX_EXPIRES: u32 = 3600;

/// Whether an `Event` header value names the message-summary package (parameters such as
/// `;id=` are ignored).
pub fn is_message_summary(event: Option<&str>) -> bool {
    event
        .and_then(|e| e.split(';').next())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case(EVENT))
}

/// The interval granted for an `Expires` header value: absent → [`MAX_EXPIRES`]; `0` stays 0
/// (unsubscribe, or fetch once); otherwise clamped to [`MIN_EXPIRES`]..=[`MAX_EXPIRES`].
/// `None` when the value is not a number.
pub fn granted_expires(header: Option<&str>) -> Option<u32> {
    let Some(v) = header else {
        return Some(MAX_EXPIRES);
    };
    let n: u64 = v.trim().parse().ok()?;
    Some(if n == 0 {
        0
    } else {
        n.clamp(u64::from(MIN_EXPIRES), u64::from(MAX_EXPIRES)) as u32
    })
}

/// The NOTIFY body for `account` (`sip:alice@DOMAIN`) with these counts.
pub fn summary_body(account: &str, counts: MailboxCounts) -> String {
    format!(
        "Messages-Waiting: {}\r\nMessage-Account: {account}\r\nVoice-Message: {}/{} (0/0)\r\n",
        if counts.new > 0 { "yes" } else { "no" },
        counts.new,
        counts.old
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_body_follows_rfc3842() {
        let body = summary_body(
            "sip:carol@hookflash.local",
            MailboxCounts { new: 1, old: 2 },
        );
        assert_eq!(
            body,
            "Messages-Waiting: yes\r\nMessage-Account: sip:carol@hookflash.local\r\nVoice-Message: 1/2 (0/0)\r\n",
            "new/old with urgent counts in brackets"
        );
        assert!(
            summary_body("sip:c@h", MailboxCounts::default()).starts_with("Messages-Waiting: no"),
            "nothing new: no"
        );
    }

    #[test]
    fn subscriptions_are_recognised_and_clamped() {
        assert!(is_message_summary(Some("message-summary")));
        assert!(is_message_summary(Some(" Message-Summary ;id=1")));
        assert!(!is_message_summary(Some("presence")), "other packages");
        assert!(!is_message_summary(None), "no Event header");
        assert_eq!(granted_expires(None), Some(3600), "default an hour");
        assert_eq!(granted_expires(Some("0")), Some(0), "0 unsubscribes");
        assert_eq!(granted_expires(Some("5")), Some(60), "too short is raised");
        assert_eq!(
            granted_expires(Some("999999999999")),
            Some(3600),
            "too long is lowered"
        );
        assert_eq!(granted_expires(Some("soon")), None, "not a number");
    }
}
