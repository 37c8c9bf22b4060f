//! Serves the loopback Binance stand-in as a process, for a demonstration or a manual test of a
//! service that signs through user-service (`scripts/dev/signing_demo.sh`).
//!
//! ```text
//! STAND_IN_KEY=… STAND_IN_SECRET=… cargo run -p user-service-brokers --features stand-in \
//!     --example binance_stand_in
//! ```
//!
//! Prints `listening on http://127.0.0.1:<port>` and serves until its standard input closes.
//! It knows one API key and its secret, read from the environment (never printed), and accepts
//! a request only when its signature is Binance's HMAC-SHA256 of that secret.

use std::io::Read;
use std::process::ExitCode;

use user_service_brokers::stand_in::{BinanceStandIn, Outcome};

fn main() -> ExitCode {
    let (Ok(key), Ok(secret)) = (
        std::env::var("STAND_IN_KEY"),
        std::env::var("STAND_IN_SECRET"),
    ) else {
        eprintln!("STAND_IN_KEY and STAND_IN_SECRET must be set");
        return ExitCode::FAILURE;
    };
    let stand_in = match BinanceStandIn::start([(key, secret)]) {
        Ok(stand_in) => stand_in,
        Err(error) => {
            eprintln!("cannot start the stand-in: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("listening on {}", stand_in.url());
    // Serves until whoever started it closes our standard input (or exits).
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    for request in stand_in.requests() {
        let verdict = if request.outcome == Outcome::Accepted {
            "accepted"
        } else {
            "refused"
        };
        println!("{} {} {verdict}", request.method, request.path);
    }
    ExitCode::SUCCESS
}
