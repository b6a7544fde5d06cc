//! The desktop app, as a user tries it: the real binary (front end embedded) in a real
//! window under Xvfb, driven through WebDriver (tauri-driver + WebKitWebDriver), on its
//! embedded demo switchboard, with its audio on virtual devices so each test checks by
//! frequency who hears whom: the app's microphone is a 440 Hz tone, Ada talks at 660 Hz,
//! Theo at 770 Hz, and the app's speaker is recorded.
//!
//! Screenshots of what each test checked land in `$TMPDIR/hookflash-screenshots/`.

use std::sync::Mutex;
use std::time::Duration;

use hookflash_core::audio::SAMPLE_RATE;
use hookflash_tests::certs::TestPki;
use hookflash_tests::desktop::{tid, Desktop, Window};
use hookflash_tests::hears;
use hookflash_tests::process::SwitchboardProcess;

/// WebKit windows are heavy on two cores: one desktop at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const ADA_HZ: f64 = 660.0;
const MY_MIC_HZ: u32 = 440;
const SECONDS: fn(u64) -> Duration = Duration::from_secs;

fn signed_in(window: &Window) {
    window.wait(
        &format!("{}[data-state=\"connected\"]", tid("connection-banner")),
        SECONDS(30),
        "the app signs in to its demo switchboard by itself",
    );
    window.wait(
        &tid("contact-ada"),
        SECONDS(5),
        "the demo directory is shown",
    );
}

fn call_items(window: &Window) -> Vec<(String, String, String)> {
    window
        .find_all(&tid("call-item"))
        .iter()
        .map(|e| {
            (
                e.attr("data-call-id").unwrap_or_default(),
                e.attr("data-state").unwrap_or_default(),
                e.attr("data-remote").unwrap_or_default(),
            )
        })
        .collect()
}

/// Waits for a call with `remote` containing `who` in `state`; returns its id.
fn call_in_state(window: &Window, who: &str, state: &str, why: &str) -> String {
    let css = format!("{}[data-state=\"{state}\"]", tid("call-item"));
    let item = window.wait_for(&css, SECONDS(20), why, |e| {
        e.attr("data-remote").is_some_and(|r| r.contains(who))
    });
    item.attr("data-call-id").expect("a call id")
}

fn call_button(window: &Window, call_id: &str, button: &str) {
    let css = format!(
        "{}[data-call-id=\"{call_id}\"] {}",
        tid("call-item"),
        tid(button)
    );
    window
        .wait(&css, SECONDS(5), &format!("the call has a {button} button"))
        .click();
}

fn tail(samples: &[i16], seconds: f64) -> &[i16] {
    let n = (seconds * f64::from(SAMPLE_RATE)) as usize;
    &samples[samples.len().saturating_sub(n)..]
}

fn open_transfer_dialog(window: &Window, call_id: &str) {
    call_button(window, call_id, "call-transfer");
    window.wait(
        &tid("transfer-dialog"),
        SECONDS(5),
        "Transfer opens the dialog",
    );
}

fn transfer_outcome(window: &Window, why: &str) -> String {
    let css = tid("transfer-status");
    let status = window.wait_for(&css, SECONDS(40), why, |e| {
        matches!(
            e.attr("data-state").as_deref(),
            Some("Transferred" | "Failed")
        )
    });
    status.attr("data-state").unwrap_or_default()
}

fn close_dialog(window: &Window) {
    if let Some(close) = window.find(&tid("transfer-close")) {
        close.click();
    }
    window.wait_gone(&tid("transfer-dialog"), SECONDS(5), "the dialog closes");
}

#[test]
fn a_new_user_calls_a_contact_hears_them_and_transfers_three_ways() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let desktop = Desktop::start("calls", MY_MIC_HZ, &[]);
    let window = desktop.open_app();
    signed_in(&window);
    window.screenshot("en-light-dialpad");

    // A call to a contact, heard by frequency.
    window.find(&tid("call-contact-ada")).expect("Ada").click();
    let ada = call_in_state(&window, "ada", "Connected", "Ada answers");
    std::thread::sleep(SECONDS(3));
    window.screenshot("en-light-in-call");
    let timer = window
        .find(&format!(
            "{}[data-call-id=\"{ada}\"] {}",
            tid("call-item"),
            tid("call-timer")
        ))
        .map(|t| t.text())
        .unwrap_or_default();
    assert!(
        timer.starts_with("00:0"),
        "a connected call shows its timer: {timer:?}"
    );
    call_button(&window, &ada, "call-hangup");
    window.wait_gone(&tid("call-item"), SECONDS(10), "the call ends on Hang up");
    let heard = desktop.last_heard(SECONDS(10));
    assert!(
        hears(tail(&heard, 2.0), ADA_HZ),
        "the user hears Ada (660 Hz) in the call's last seconds"
    );

    // A failed transfer says why, and the call is there to continue.
    window.find(&tid("call-contact-ada")).expect("Ada").click();
    let ada = call_in_state(&window, "ada", "Connected", "Ada answers again");
    open_transfer_dialog(&window, &ada);
    window
        .find(&tid("transfer-mode-person"))
        .expect("to a person")
        .click();
    window
        .wait(
            &tid("transfer-target-input"),
            SECONDS(5),
            "an address field",
        )
        .type_text("bob");
    window
        .find(&tid("transfer-submit"))
        .expect("Transfer button")
        .click();
    assert_eq!(
        transfer_outcome(&window, "Bob is busy: the transfer fails"),
        "Failed",
        "a transfer to a busy person fails"
    );
    let error = window
        .find(&tid("transfer-error"))
        .map(|e| e.text())
        .unwrap_or_default();
    assert!(
        error.contains("486") && error.to_lowercase().contains("busy"),
        "the failure says why in words, with the code: {error:?}"
    );
    window.screenshot("en-light-transfer-failed");
    close_dialog(&window);
    call_in_state(&window, "ada", "Connected", "the original call comes back");

    // A blind transfer: Ada goes to the echo contact; the user's call ends.
    open_transfer_dialog(&window, &ada);
    window
        .find(&tid("transfer-mode-person"))
        .expect("to a person")
        .click();
    let input = window.wait(
        &tid("transfer-target-input"),
        SECONDS(5),
        "an address field",
    );
    input.clear();
    input.type_text("echo");
    window
        .find(&tid("transfer-submit"))
        .expect("Transfer button")
        .click();
    std::thread::sleep(Duration::from_millis(300));
    window.screenshot("en-light-transfer-in-progress");
    assert_eq!(
        transfer_outcome(&window, "Echo answers Ada: transferred"),
        "Transferred",
        "Transferred only once the target took the call"
    );
    window.screenshot("en-light-transferred");
    close_dialog(&window);
    window.wait_gone(
        &tid("call-item"),
        SECONDS(10),
        "the transferred call leaves my list",
    );

    // Attended: consult the echo contact first (Ada waits on hold), then complete.
    window.find(&tid("call-contact-ada")).expect("Ada").click();
    let ada = call_in_state(&window, "ada", "Connected", "Ada answers a third time");
    open_transfer_dialog(&window, &ada);
    window
        .find(&tid("transfer-mode-call"))
        .expect("to another call")
        .click();
    window
        .wait(
            &tid("transfer-consult-input"),
            SECONDS(5),
            "a consult field when I have no other call",
        )
        .type_text("echo");
    window
        .find(&tid("transfer-consult-start"))
        .expect("Consult")
        .click();
    call_in_state(
        &window,
        "ada",
        "LocalHold",
        "starting a consult puts Ada on hold",
    );
    call_in_state(&window, "echo", "Connected", "the consult call connects");
    std::thread::sleep(SECONDS(2));
    window.screenshot("en-light-consult");
    window
        .wait_for(
            &tid("transfer-complete"),
            SECONDS(10),
            "Complete becomes possible",
            |e| e.attr("disabled").is_none(),
        )
        .click();
    assert_eq!(
        transfer_outcome(&window, "Ada is joined to Echo"),
        "Transferred",
        "the attended transfer completes"
    );
    close_dialog(&window);
    window.wait_gone(&tid("call-item"), SECONDS(15), "both of my calls end");
    let heard = desktop.last_heard(SECONDS(10));
    assert!(
        heard
            .chunks(SAMPLE_RATE as usize / 2)
            .any(|c| hears(c, f64::from(MY_MIC_HZ))),
        "during the consult the echo contact played my own voice (440 Hz) back to me"
    );

    // Theo transfers *me* on: the new call to Ada takes the old call's place.
    window
        .find(&tid("call-contact-theo"))
        .expect("Theo")
        .click();
    call_in_state(&window, "theo", "Connected", "Theo answers");
    call_in_state(
        &window,
        "ada",
        "Connected",
        "Theo's transfer puts me through to Ada",
    );
    std::thread::sleep(SECONDS(2));
    window.screenshot("en-light-transferred-to-me");
    let calls = call_items(&window);
    assert!(
        calls.iter().all(|(_, _, remote)| !remote.contains("theo")),
        "the call with Theo is gone once his transfer went through: {calls:?}"
    );
    for (id, _, _) in calls {
        call_button(&window, &id, "call-hangup");
    }
    window.wait_gone(&tid("call-item"), SECONDS(10), "hung up");
    let heard = desktop.last_heard(SECONDS(10));
    assert!(
        hears(tail(&heard, 1.5), ADA_HZ),
        "after Theo's transfer the user hears Ada"
    );

    // The history shows what happened, transfers included.
    window.find(&tid("nav-history")).expect("History").click();
    let history = window.wait(&tid("history-list"), SECONDS(5), "the history view");
    let text = history.text();
    assert!(
        text.contains("transferred by you"),
        "a call I transferred says so: {text}"
    );
    window.screenshot("en-light-history");
}

#[test]
fn a_message_left_in_my_voicemail_can_be_played_and_links_open_the_dialler() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let desktop = Desktop::start("voicemail", MY_MIC_HZ, &[]);
    let window = desktop.open_app();
    signed_in(&window);

    // Send Ada to my own voicemail: she talks there for a few seconds and hangs up.
    window.find(&tid("call-contact-ada")).expect("Ada").click();
    let ada = call_in_state(&window, "ada", "Connected", "Ada answers");
    open_transfer_dialog(&window, &ada);
    window
        .find(&tid("transfer-mode-voicemail"))
        .expect("to voicemail")
        .click();
    window
        .wait(&tid("transfer-target-input"), SECONDS(5), "whose mailbox")
        .type_text("you");
    window
        .find(&tid("transfer-submit"))
        .expect("Transfer")
        .click();
    assert_eq!(
        transfer_outcome(&window, "voicemail answers Ada"),
        "Transferred",
        "a transfer to voicemail completes when the mailbox answers"
    );
    close_dialog(&window);
    window
        .find(&tid("nav-voicemail"))
        .expect("Voicemail")
        .click();
    let message = window.wait(
        &tid("voicemail-message"),
        SECONDS(40),
        "Ada's message appears in my voicemail",
    );
    window.screenshot("en-light-voicemail");
    let badge = window
        .find(&tid("voicemail-badge"))
        .map(|b| b.text())
        .unwrap_or_default();
    assert!(
        badge.contains('1'),
        "the message-waiting count shows it: {badge:?}"
    );
    let before = desktop.recordings().len();
    message.find(&tid("voicemail-play")).expect("Play").click();
    // The message plays to its end; then the speaker closes and its recording is complete.
    let deadline = std::time::Instant::now() + SECONDS(40);
    while desktop.recordings().len() == before && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(SECONDS(12));
    let heard = desktop.last_heard(SECONDS(20));
    assert!(
        heard
            .chunks(SAMPLE_RATE as usize)
            .filter(|c| hears(c, ADA_HZ))
            .count()
            >= 2,
        "playing the message plays Ada's voice (660 Hz) on my speaker"
    );
    message
        .find(&tid("voicemail-delete"))
        .expect("Delete")
        .click();
    window.wait_gone(
        &tid("voicemail-message"),
        SECONDS(10),
        "a deleted message goes",
    );

    // Rita puts Ada through to me: an incoming call, "Ada, transferred by Rita".
    window.find(&tid("nav-calls")).expect("Calls").click();
    window
        .find(&tid("call-contact-rita"))
        .expect("Rita")
        .click();
    call_in_state(&window, "rita", "Connected", "Rita answers");
    let incoming = window.wait(
        &tid("incoming-call"),
        SECONDS(30),
        "after Rita hangs up, Ada calls me through Rita's transfer",
    );
    let caller = incoming
        .find(&tid("incoming-caller"))
        .map(|e| e.text())
        .unwrap_or_default();
    let transferor = incoming
        .find(&tid("incoming-transferor"))
        .map(|e| e.text())
        .unwrap_or_default();
    assert!(
        caller.contains("Ada"),
        "the incoming panel names the caller: {caller:?}"
    );
    assert!(
        transferor.contains("Rita"),
        "and who transferred the call to me: {transferor:?}"
    );
    window.screenshot("en-light-incoming-transferred");
    incoming
        .find(&tid("incoming-accept"))
        .expect("Accept")
        .click();
    let ada = call_in_state(&window, "ada", "Connected", "I take Ada's call");
    std::thread::sleep(SECONDS(2));
    call_button(&window, &ada, "call-hangup");
    window.wait_gone(&tid("call-item"), SECONDS(10), "hung up");
    let heard = desktop.last_heard(SECONDS(10));
    assert!(
        hears(tail(&heard, 1.5), ADA_HZ),
        "the call that came through Rita's transfer is Ada's (660 Hz)"
    );

    // A sip: link opened while the app runs fills the dialler of the running app.
    let status = desktop.launch_again(&["sip:ada@hookflash.local"]);
    assert!(
        status.success(),
        "the second launch hands over and exits cleanly"
    );
    let input = window.wait_for(
        &tid("address-input"),
        SECONDS(10),
        "the link fills the address",
        |e| e.property("value").as_str() == Some("sip:ada@hookflash.local"),
    );
    let _ = input;
    window.screenshot("en-light-deep-link");
    window.find(&tid("call-button")).expect("Call").click();
    let ada = call_in_state(
        &window,
        "ada",
        "Connected",
        "the link's address can be called",
    );
    call_button(&window, &ada, "call-hangup");
}

#[test]
fn the_app_speaks_korean_and_chinese_in_light_and_dark() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let desktop = Desktop::start("languages", MY_MIC_HZ, &[("LANG", "ko_KR.UTF-8")]);
    let window = desktop.open_app();
    signed_in(&window);
    let lang = window.script(
        "return document.documentElement.lang",
        serde_json::json!([]),
    );
    assert_eq!(lang, "ko", "the system language (ko_KR) is followed");
    window.screenshot("ko-light-dialpad");
    window.find(&tid("nav-settings")).expect("Settings").click();
    window.wait(&tid("settings-language"), SECONDS(5), "the settings page");
    window.screenshot("ko-light-settings");
    window
        .find(&format!(
            "{} option[value=\"zh\"]",
            tid("settings-language")
        ))
        .expect("中文")
        .click();
    window
        .find(&format!("{} option[value=\"dark\"]", tid("settings-theme")))
        .expect("dark")
        .click();
    let deadline = std::time::Instant::now() + SECONDS(5);
    loop {
        let theme = window.script(
            "return document.documentElement.dataset.theme + ' ' + document.documentElement.lang",
            serde_json::json!([]),
        );
        if theme == "dark zh-Hans" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "language and theme apply at once: {theme}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    window.screenshot("zh-dark-settings");
    window.find(&tid("nav-calls")).expect("Calls").click();
    window.find(&tid("call-contact-ada")).expect("Ada").click();
    let ada = call_in_state(&window, "ada", "Connected", "a call in Chinese");
    std::thread::sleep(SECONDS(1));
    window.screenshot("zh-dark-in-call");
    call_button(&window, &ada, "call-hangup");
    window.wait_gone(&tid("call-item"), SECONDS(10), "hung up");
    desktop.close_app(window);
    // The choice survives a restart.
    let window = desktop.open_app();
    signed_in(&window);
    let theme = window.script(
        "return document.documentElement.dataset.theme + ' ' + document.documentElement.lang",
        serde_json::json!([]),
    );
    assert_eq!(theme, "dark zh-Hans", "preferences persist across restarts");
    window.screenshot("zh-dark-dialpad");

    // Every language in both themes, for a person to look at.
    for (lang, html_lang) in [("en", "en"), ("ko", "ko"), ("zh", "zh-Hans")] {
        for theme in ["light", "dark"] {
            window.find(&tid("nav-settings")).expect("Settings").click();
            for (select, value) in [("settings-language", lang), ("settings-theme", theme)] {
                window
                    .wait(
                        &format!("{} option[value=\"{value}\"]", tid(select)),
                        SECONDS(5),
                        "the setting offers it",
                    )
                    .click();
            }
            let want = format!("{theme} {html_lang}");
            let deadline = std::time::Instant::now() + SECONDS(5);
            while window.script(
                "return document.documentElement.dataset.theme + ' ' + document.documentElement.lang",
                serde_json::json!([]),
            ) != want.as_str()
            {
                assert!(std::time::Instant::now() < deadline, "{want} applies at once");
                std::thread::sleep(Duration::from_millis(100));
            }
            window.screenshot(&format!("{lang}-{theme}-settings"));
            window.find(&tid("nav-calls")).expect("Calls").click();
            window.wait(&tid("contact-ada"), SECONDS(5), "the calls view");
            window.screenshot(&format!("{lang}-{theme}-calls"));
        }
    }
}

/// Clicks Sign in on the settings page, scrolled to the middle of the window as a user
/// would before clicking (at the bottom edge a notice may lie over it).
fn click_sign_in(window: &Window) {
    window.script(
        "document.querySelector('[data-testid=\"settings-save-account\"]').scrollIntoView({ block: 'center' })",
        serde_json::json!([]),
    );
    window
        .find(&tid("settings-save-account"))
        .expect("Sign in")
        .click();
}

/// Fills the account form on the settings page and signs in.
fn sign_in_to(window: &Window, server: &str, transport: &str, user: &str, token: &str) {
    for (field, value) in [
        ("settings-server", server),
        ("settings-domain", "hookflash.local"),
        ("settings-user", user),
        ("settings-secret", token),
    ] {
        let input = window.find(&tid(field)).expect(field);
        input.clear();
        input.type_text(value);
    }
    window
        .find(&format!(
            "{} option[value=\"{transport}\"]",
            tid("settings-transport")
        ))
        .expect("the transport is offered")
        .click();
    click_sign_in(window);
}

#[test]
fn a_tls_account_with_a_private_authority_signs_in_from_the_settings_page() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rt = tokio::runtime::Runtime::new().expect("a runtime for the switchboard process");
    let root = std::env::temp_dir().join(format!("hookflash-desktop-ca-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    // The organisation's own authority, which no system trusts.
    let pki = TestPki::issue(&root, "switchboard", &["hookflash.local", "127.0.0.1"]);
    let (cert, key) = (
        pki.cert.display().to_string(),
        pki.key.display().to_string(),
    );
    let sb = rt.block_on(SwitchboardProcess::start(
        "desktop tls secret",
        &["--tls-cert", &cert, "--tls-key", &key, "--tls-port", "0"],
    ));
    let tls = sb.stream("tls").expect("the switchboard listens on TLS");
    let token = rt.block_on(sb.token("alice"));

    let desktop = Desktop::start("tls-ca", MY_MIC_HZ, &[]);
    let window = desktop.open_app();
    signed_in(&window);
    window.find(&tid("nav-settings")).expect("Settings").click();
    window.wait(&tid("settings-server"), SECONDS(5), "the settings page");
    sign_in_to(&window, &tls, "tls", "alice", &token);
    window.wait(
        &format!(
            "{}[data-state=\"certificateNotTrusted\"]",
            tid("connection-banner")
        ),
        SECONDS(30),
        "without the authority, the server's certificate is not trusted, and the banner says so",
    );
    window.screenshot("tls-untrusted");

    // The user chooses the authority's certificate in the form (the file chooser is the
    // system's; here the file is handed to the input as the chooser would) and signs in
    // again, the token kept.
    let pem = std::fs::read_to_string(&pki.ca).expect("the authority's certificate");
    window.script(
        "const input = document.querySelector('[data-testid=\"settings-tls-ca\"]');
         const files = new DataTransfer();
         files.items.add(new File([arguments[0]], 'corp-ca.pem', { type: 'application/x-pem-file' }));
         input.files = files.files;",
        serde_json::json!([pem]),
    );
    click_sign_in(&window);
    window.wait(
        &format!("{}[data-state=\"connected\"]", tid("connection-banner")),
        SECONDS(30),
        "with the authority trusted, the app signs in over TLS",
    );
    window.wait(
        &tid("settings-tls-ca-state"),
        SECONDS(5),
        "the authority's field",
    );
    let state = window
        .find(&tid("settings-tls-ca-state"))
        .expect("the authority's state")
        .text();
    assert!(
        state.contains("is trusted"),
        "the settings page says the authority is trusted: {state:?}"
    );
    window.screenshot("tls-trusted");
    desktop.close_app(window);
    rt.block_on(sb.stop());
    let _ = std::fs::remove_dir_all(&root);
}
