//! A sensing device's process feeding a running ptt-node daemon through the library's control
//! client: it reads readings (one number per line on stdin, as a temperature probe would print
//! them), raises an alert whenever a reading crosses the threshold upwards, and cancels it
//! when the reading falls back below.
//!
//! ```sh
//! ptt-node run --bundle ./thermal-1 --data ./thermal-1-data &
//! printf '21.5\n22\n71.5\n72\n30\n' | cargo run --example sensor -- ./thermal-1-data 60
//! ```

use std::io::BufRead;
use std::path::PathBuf;

use ptt_node::alert::Severity;
use ptt_node::control::{Client, Reply, Request};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(data), Some(threshold)) = (args.next(), args.next()) else {
        eprintln!("usage: sensor DATA_DIR THRESHOLD_CELSIUS < readings");
        std::process::exit(2);
    };
    let data = PathBuf::from(data);
    let threshold: f64 = threshold.parse()?;
    let mut client = Client::connect(&data).await?;
    let mut above = false;
    let mut raised: Option<String> = None;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let Ok(celsius) = line.trim().parse::<f64>() else {
            eprintln!("sensor: ignoring {line:?}: not a number");
            continue;
        };
        let now_above = celsius > threshold;
        if now_above && !above {
            let req = Request::Alert {
                channel: "alerts".into(),
                severity: Severity::Severe,
                kind: "temperature".into(),
                text: format!("temperature {celsius:.1} °C is above {threshold:.1} °C"),
                location: None,
                attributes: vec![("celsius".into(), format!("{celsius}"))],
                update: None,
            };
            match client.call(&req).await? {
                Reply::Sent { id, peers, .. } => {
                    println!("alert {id} sent to {peers} peers");
                    raised = Some(id);
                }
                other => eprintln!("sensor: unexpected reply {other:?}"),
            }
        }
        if !now_above && let Some(id) = raised.take() {
            let req = Request::Cancel {
                id: id.clone(),
                text: format!("temperature back to {celsius:.1} °C"),
            };
            match client.call(&req).await? {
                Reply::Sent { id: c, .. } => println!("alert {id} cancelled by {c}"),
                other => eprintln!("sensor: unexpected reply {other:?}"),
            }
        }
        above = now_above;
    }
    Ok(())
}
