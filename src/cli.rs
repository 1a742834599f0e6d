//! The command line: `serve` (default), `migrate`, `openapi`, `seed-demo`, `keys create`.

use clap::{Parser, Subcommand};

use crate::config::Settings;
use crate::domain::api_key::{ApiKeySecret, KeyName, Scope};
use crate::startup::{prepare_database, Application};

#[derive(Parser)]
#[command(name = "custclass", version, about = "Customer classification management service (客户分类管理)")]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the OpenAPI document.
    Openapi,
    /// Load the electronics-maker example: schemes, categories and customers.
    SeedDemo,
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key and print its secret (shown only this once).
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = ["read", "write", "admin"])]
        scope: String,
    },
}

pub fn main() -> Result<(), String> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Openapi => {
            print!("{}", crate::api::openapi::document_json());
            Ok(())
        }
        Command::Migrate => {
            let settings = Settings::from_env()?;
            prepare_database(&settings)?;
            log::info!("database {} is up to date", settings.database_url.redacted());
            Ok(())
        }
        Command::Keys { command: KeysCommand::Create { name, scope } } => {
            let settings = Settings::from_env()?;
            let pool = prepare_database(&settings)?;
            let name = KeyName::parse(&name).map_err(|e| format!("--name {}", e.message))?;
            let scope: Scope = scope.parse().map_err(|e: crate::domain::FieldError| e.message)?;
            let secret = ApiKeySecret::generate();
            let mut session = pool.get().map_err(|e| e.to_string())?;
            crate::store::api_keys::create(&mut session.conn, &name, scope, &secret, None).map_err(|e| e.detail)?;
            println!("{}", secret.expose());
            Ok(())
        }
        Command::SeedDemo => {
            let settings = Settings::from_env()?;
            let pool = prepare_database(&settings)?;
            let mut session = pool.get().map_err(|e| e.to_string())?;
            let customers = crate::demo::seed(&mut session.conn).map_err(|e| e.detail)?;
            log::info!("demo data loaded: 3 schemes and {customers} customers");
            Ok(())
        }
        Command::Serve => {
            let settings = Settings::from_env()?;
            log::info!(
                "custclass {} starting on {} with {}",
                env!("CARGO_PKG_VERSION"),
                settings.bind_addr,
                settings.database_url.redacted()
            );
            let app = Application::build(&settings)?;
            actix_web::rt::System::new().block_on(app.run_until_stopped()).map_err(|e| e.to_string())
        }
    }
}
