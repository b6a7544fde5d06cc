//! `startCall` takes a user name, a SIP URI or a `tel:` number; and an agent can sign in with
//! a SIP user name and password instead of a token.

use hookflash_core::agent::Credential;
use hookflash_core::call::CallState;
use hookflash_core::sip::TransportKind;
use hookflash_tests::{Rig, TestAgent};

#[tokio::test]
async fn sip_uri_and_tel_number_reach_their_users() {
    let rig = Rig::start().await;
    let mut a = rig.agent("alice", 440.0).await;
    let mut b = rig.agent("bob", 880.0).await;
    let mut n = rig.agent("15551234", 660.0).await;

    let uri = format!("sip:bob@{}", rig.switchboard.domain());
    let call = a
        .agent
        .start_call(&uri)
        .await
        .expect("a SIP URI is a valid target");
    let _ = b.wait_incoming().await;
    a.wait_state(&call, CallState::Ringing).await;
    a.agent.call(&call).hang_up().await.unwrap();
    a.wait_state(&call, CallState::Disconnected).await;

    let call = a
        .agent
        .start_call("tel:+1-555-1234")
        .await
        .expect("a tel: number is a valid target");
    let id = n.wait_incoming().await;
    n.agent
        .call(&id)
        .accept()
        .await
        .expect("the number's owner answers");
    a.wait_state(&call, CallState::Connected).await;
}

#[tokio::test]
async fn password_credentials_sign_in_and_get_called() {
    let rig = Rig::start().await;
    rig.switchboard
        .users()
        .add("carol", rig.switchboard.domain(), Some("correct horse"))
        .expect("add a database user");
    let (mut config, ears) = rig.config("carol", 500.0, TransportKind::Tcp);
    config.credential = Credential::Password {
        user: "carol".into(),
        password: "correct horse".into(),
    };
    let mut carol = TestAgent::create("carol", config, ears).await;
    carol.wait_connected().await;
    let mut a = rig.agent("alice", 440.0).await;
    let call = a.agent.start_call("carol").await.unwrap();
    let id = carol.wait_incoming().await;
    carol.agent.call(&id).accept().await.unwrap();
    a.wait_state(&call, CallState::Connected).await;
}
