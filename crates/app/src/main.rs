//! The `user-service` binary: parses the command line, loads the configuration, runs.

use std::process::ExitCode;

use clap::Parser;
use user_service::cli::{self, Cli, Command};
use user_service::settings::{AppEnv, Settings};
use user_service::startup::{build_state, Application};

fn main() -> ExitCode {
    let args = Cli::parse();
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("user-service: {error}");
            return ExitCode::FAILURE;
        }
    };
    user_service::telemetry::init(settings.log_format);
    match args.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings),
        command => {
            let mut stdout = std::io::stdout().lock();
            match cli::run(command, &settings, &mut stdout) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("user-service: {error}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn serve(settings: Settings) -> ExitCode {
    log::info!("configuration: {}", settings.summary());
    let local = settings.app_env == AppEnv::Local;
    let state = match build_state(settings) {
        Ok(state) => state,
        Err(error) => {
            log::error!("cannot start: {error}");
            eprintln!("user-service: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = actix_web::rt::System::new().block_on(async move {
        let app = Application::build(state)?;
        let host = app.state.settings.host.clone();
        log::info!("listening on http://{host}:{}", app.port);
        if local {
            log::info!(
                "get a token: cargo run -- users create --email you@example.com --print-token \
                 (then: curl -H \"Authorization: Bearer $TOKEN\" http://{host}:{}/users/me/broker-credentials)",
                app.port
            );
        }
        app.run().await.map_err(|e| user_service::startup::StartupError::Bind(e.to_string()))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            log::error!("server stopped: {error}");
            ExitCode::FAILURE
        }
    }
}
