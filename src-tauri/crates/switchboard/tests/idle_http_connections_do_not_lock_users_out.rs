//! A flood of idle connections to the HTTP API (as many as it allows at once) does not lock
//! real users out: the oldest connection that never began a request makes room for the next,
//! so a user's request is served at once instead of being refused until the flood times out.

mod common;

use std::time::Duration;

use common::http::{bearer, request};
use common::switchboard;
use hookflash_switchboard::HTTP_MAX_CONNECTIONS as MAX_CONNECTIONS;
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_is_served_while_idle_connections_fill_the_api() {
    let sb = switchboard().await;
    let http = sb.http_addr().expect("Config::local serves HTTP");
    let mut flood = Vec::new();
    for _ in 0..MAX_CONNECTIONS + 20 {
        flood.push(TcpStream::connect(http).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let auth = bearer(&sb.issue_token("carol", Duration::from_secs(600)));
    let reply = tokio::time::timeout(
        Duration::from_secs(3),
        request(http, "GET", "/api/voicemail", Some(&auth), b""),
    )
    .await
    .expect("served while the idle flood holds every slot (the header timeout is 10 s)");
    assert_eq!(reply.status, 200, "Carol lists her voicemail");
    drop(flood);
}
