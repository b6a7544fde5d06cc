//! The installed package, as a user gets it: `scripts/deb-test` builds the .deb, installs it
//! with `apt-get install ./…deb`, then runs this with `HOOKFLASH_APP=/usr/bin/hookflash`.

use std::time::Duration;

use hookflash_tests::desktop::{tid, Desktop};

#[test]
#[ignore = "run by scripts/deb-test against the installed package"]
fn the_installed_binary_opens_its_window_and_signs_in() {
    let app = std::env::var("HOOKFLASH_APP").expect("HOOKFLASH_APP names the installed binary");
    assert!(
        app.starts_with("/usr/"),
        "this test is about the installed package, not a build: {app}"
    );
    let desktop = Desktop::start("installed", 440, &[]);
    let window = desktop.open_app();
    window.wait(
        &format!("{}[data-state=\"connected\"]", tid("connection-banner")),
        Duration::from_secs(30),
        "the installed app signs in to its embedded switchboard",
    );
    window.wait(
        &tid("contact-ada"),
        Duration::from_secs(5),
        "with its demo directory",
    );
    window.screenshot("installed-package");
}
