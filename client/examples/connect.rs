//! A device that connects, sends a reading a second and prints what it is pushed:
//!
//! ```sh
//! cargo run -p ews-client --example connect -- ws://127.0.0.1:8080/ws "$TOKEN"
//! ```
//!
//! (`TOKEN`: the one a `--standalone` worker prints, or `ews-load token --sub NAME ...`.)

use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(token)) = (args.next(), args.next()) else {
        eprintln!("usage: connect URL TOKEN");
        std::process::exit(2);
    };
    // A real application fetches a fresh token from its backend here.
    let token_fn = move || {
        let token = token.clone();
        async move { Ok::<_, String>(token) }
    };
    let (client, mut inbound) =
        ews_client::Client::connect(&url, token_fn, ews_client::Options::new("example-device"))?;
    tokio::spawn(async move {
        while let Some(i) = inbound.recv().await {
            println!("heard: {i:?}");
        }
    });
    for n in 1.. {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as i64;
        let ack = client.send(format!("reading {n}"), now).await?.await?;
        println!("stored as {} (seq {})", ack.id, ack.seq);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}
