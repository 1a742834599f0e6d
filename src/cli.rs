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
    /// Check every derived table (memberships, vectors, counters, snapshots, duplicate
    /// keys, sales totals) against the assignments, customers and transactions it is
    /// derived from; exits with status 1 when something differs.
    Audit {
        /// Rewrite what differs (a range of customers per transaction), then check again.
        #[arg(long)]
        repair: bool,
        /// Print the findings as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
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
            crate::store::access::api_keys::create(&mut session.conn, &name, scope, &secret, None)
                .map_err(|e| e.detail)?;
            println!("{}", secret.expose());
            Ok(())
        }
        Command::Audit { repair, json } => {
            let settings = Settings::from_env()?;
            let pool = prepare_database(&settings)?;
            let mut session = pool.get().map_err(|e| e.to_string())?;
            audit(&mut session.conn, repair, json).map_err(|e| e.to_string())
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

/// `custclass audit [--repair] [--json]`: the findings on standard output; an error
/// (exit status 1) when something still differs.
fn audit(conn: &mut crate::db::DbConnection, repair: bool, json: bool) -> Result<(), String> {
    use crate::store::audit::{self, Findings};
    let detail = |e: crate::error::AppError| e.detail.to_string();
    let repaired = if repair { Some(audit::repair(conn).map_err(detail)?) } else { None };
    let findings = audit::audit(conn).map_err(detail)?;
    if json {
        let report =
            serde_json::json!({"clean": findings.differences() == 0, "repaired": repaired, "findings": findings});
        println!("{report:#}");
    } else {
        let print = |heading: &str, findings: &Findings| {
            println!("{heading}");
            for table in &findings.tables {
                println!("  {:<24}{}", table.table.label(), table.differences);
                for example in &table.examples {
                    println!("      {}: expected {}, found {}", example.key, example.expected, example.found);
                }
            }
        };
        if let Some(repaired) = &repaired {
            print("rewritten (differences found and repaired):", repaired);
        }
        print("differences from the sources:", &findings);
    }
    match findings.differences() {
        0 => Ok(()),
        n if repair => Err(format!(
            "{n} differences remain after the repair (the service may have written meanwhile; run the audit again)"
        )),
        n => Err(format!("the audit found {n} differences; `custclass audit --repair` rewrites them")),
    }
}
