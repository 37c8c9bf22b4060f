//! The `user-service` binary: parses the command line, loads the configuration, runs.

use std::process::ExitCode;

use clap::FromArgMatches;
use user_service::cli::{self, Cli, Command};
use user_service::config::{AppEnv, Settings};
use user_service::startup::{build_state, Application};
use user_service_domain::chain;

fn main() -> ExitCode {
    let args = match Cli::from_arg_matches(&cli::command().get_matches()) {
        Ok(args) => args,
        Err(error) => error.exit(),
    };
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("user-service: {error}");
            return ExitCode::FAILURE;
        }
    };
    user_service::telemetry::init(settings.log_format);
    actix_web::rt::System::new().block_on(async move {
        match args.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(settings).await,
            command => {
                let mut stdout = std::io::stdout().lock();
                match cli::run(command, &settings, &mut stdout).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(error) => {
                        eprintln!("user-service: {error}");
                        ExitCode::FAILURE
                    }
                }
            }
        }
    })
}

async fn serve(settings: Settings) -> ExitCode {
    log::info!("configuration: {}", settings.summary());
    let local = settings.app_env == AppEnv::Local;
    let started = async {
        let state = build_state(settings).await?;
        Application::build(state)
    };
    let app = match started.await {
        Ok(app) => app,
        Err(error) => {
            // Once, in the log (which goes to stderr): not again as a bare line.
            log::error!("cannot start: {}", chain(&error));
            return ExitCode::FAILURE;
        }
    };
    let host = app.state.settings.host.clone();
    log::info!("listening on http://{host}:{}", app.port);
    if local {
        log::info!(
            "get a token: cargo run -- users create --email you@example.com --print-token \
             (then: curl -H \"Authorization: Bearer $TOKEN\" http://{host}:{}/users/me/broker-credentials)",
            app.port
        );
    }
    match app.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            log::error!("server stopped: {error}");
            ExitCode::FAILURE
        }
    }
}
