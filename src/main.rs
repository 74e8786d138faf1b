//! The `portcullis` command: parse arguments, set up logging, load the
//! configuration, install the TLS provider, run.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use portcullis::config::{self, ConfigError, ProcessEnvironment};
use portcullis::{Portcullis, Reloads, error_chain};

/// Exit code for a bad configuration or bad arguments (clap uses it too).
const EXIT_BAD_CONFIG: u8 = 2;
/// Exit code for a failure while running.
const EXIT_RUNTIME: u8 = 1;

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "An AWS-ALB-style authenticating reverse proxy"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Run(ConfigArgs),
    /// Validate a configuration file, report every problem, bind nothing.
    Check(ConfigArgs),
    /// Print a fresh session secret and an ES256 signing key.
    Keygen {
        /// Print them as a Kubernetes Secret manifest with this name.
        #[arg(long, value_name = "NAME")]
        kubernetes: Option<String>,
    },
    /// Probe a running portcullis' admin endpoint: exit 0 when it answers
    /// 200, 1 otherwise. For a container HEALTHCHECK in an image with no shell.
    Healthcheck {
        /// The plain-HTTP admin URL to probe.
        #[arg(long, default_value = "http://127.0.0.1:9901/healthz")]
        url: String,
    },
    /// Run the whole flow on this machine: the proxy, a development OpenID
    /// provider and an echo application, all on loopback. For development only.
    Demo {
        /// The proxy's port on 127.0.0.1 (0 picks a free one).
        #[arg(long, default_value_t = 8443)]
        port: u16,
    },
    /// Run a development OpenID provider (test users, groups, clients; a
    /// Cognito-shaped mode) to run an app behind portcullis locally with no
    /// real IdP. For development only; loopback unless --allow-remote.
    DevIdp(DevIdpArgs),
    /// Turn an ALB listener's rules (`aws elbv2 describe-rules` JSON) into
    /// a configuration on stdout; what cannot be carried over goes to stderr.
    ImportAlb(ImportAlbArgs),
}

/// `portcullis import-alb`.
#[derive(clap::Args)]
struct ImportAlbArgs {
    /// The output of `aws elbv2 describe-rules --listener-arn ARN`.
    #[arg(long, value_name = "FILE")]
    rules: PathBuf,
    /// The output of `aws elbv2 describe-listeners`: the port, protocol,
    /// certificates and default action of the rules' listener.
    #[arg(long, value_name = "FILE")]
    listener: Option<PathBuf>,
    /// Where a target group's traffic goes (NAME: the target group's name);
    /// repeat for more. Others become ${TARGET_<NAME>} placeholders.
    #[arg(long = "target", value_name = "NAME=URL")]
    targets: Vec<portcullis::import_alb::Target>,
}

/// `portcullis dev-idp`: flags override the file; with neither, alice and
/// bob sign in to client portcullis-dev at http://127.0.0.1:9000.
#[derive(clap::Args)]
struct DevIdpArgs {
    /// A YAML (or TOML, JSON) file with clients and users (docs/dev-idp.md).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Where to listen [default: 127.0.0.1:9000].
    #[arg(long, value_name = "IP:PORT")]
    address: Option<std::net::SocketAddr>,
    /// The issuer URL, as browsers and portcullis reach the provider
    /// [default: http://ADDRESS].
    #[arg(long, value_name = "URL")]
    issuer: Option<String>,
    /// Look like a Cognito user pool reached through `endpoint_url`.
    #[arg(long)]
    cognito: bool,
    /// Cognito mode: the base URL (authenticate_cognito's endpoint_url)
    /// [default: http://ADDRESS]; the issuer is URL/POOL_ID.
    #[arg(long, value_name = "URL")]
    endpoint_url: Option<String>,
    /// Cognito mode: the user pool id [default: us-east-1_DevPool].
    #[arg(long, value_name = "POOL_ID")]
    user_pool_id: Option<String>,
    /// A client, ID:SECRET:REDIRECT_URI[,REDIRECT_URI...] (port 0: any
    /// port); repeat for more. Replaces the file's clients.
    #[arg(long = "client", value_name = "ID:SECRET:URIS")]
    clients: Vec<String>,
    /// A user, NAME:PASSWORD[:GROUP,GROUP...]; repeat for more. Replaces
    /// the file's users.
    #[arg(long = "user", value_name = "NAME:PASSWORD[:GROUPS]")]
    users: Vec<String>,
    /// Allow listening on a non-loopback address (e.g. 0.0.0.0 in a container).
    #[arg(long)]
    allow_remote: bool,
}

#[derive(clap::Args)]
struct ConfigArgs {
    /// The configuration file (.yaml, .yml, .toml or .json).
    #[arg(long, short, env = "PORTCULLIS_CONFIG")]
    config: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Check(args) => check(&args.config),
        Command::Run(args) => run(&args.config),
        Command::Keygen { kubernetes } => keygen(kubernetes.as_deref()),
        Command::Demo { port } => demo(port),
        Command::DevIdp(args) => dev_idp(args),
        Command::Healthcheck { url } => healthcheck(&url),
        Command::ImportAlb(args) => import_alb(&args),
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Loads the configuration, printing every problem when it is invalid.
fn load(path: &std::path::Path) -> Result<config::Config, ExitCode> {
    config::load_file(path, &ProcessEnvironment).map_err(|error| refuse(path, &error))
}

/// Prints why the configuration at `path` cannot be used: exit 2.
fn refuse(path: &std::path::Path, error: &ConfigError) -> ExitCode {
    match error {
        ConfigError::Invalid(problems) => {
            eprintln!("{}: {} problem(s):", path.display(), problems.len());
            for problem in problems {
                eprintln!("  - {problem}");
            }
        }
        // These name the file themselves.
        ConfigError::Read { .. } | ConfigError::UnknownFormat { .. } => {
            eprintln!("{}", error_chain(error))
        }
        other => eprintln!("{}: {}", path.display(), error_chain(other)),
    }
    ExitCode::from(EXIT_BAD_CONFIG)
}

fn check(path: &std::path::Path) -> ExitCode {
    match load(path) {
        Ok(config) => {
            let rules: usize = config
                .listeners
                .iter()
                .map(|listener| listener.rules.len())
                .sum();
            println!(
                "{}: ok ({} listener(s), {rules} rule(s))",
                path.display(),
                config.listeners.len()
            );
            let warnings = config.warnings();
            if !warnings.is_empty() {
                eprintln!("{}: {} warning(s):", path.display(), warnings.len());
                for warning in &warnings {
                    eprintln!("  - {warning}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn run(path: &std::path::Path) -> ExitCode {
    // The reloads read the same file, and compare it with what this read.
    let (config, reloads) = match Reloads::from_file(path, ProcessEnvironment) {
        Ok(loaded) => loaded,
        Err(error) => return refuse(path, &error),
    };
    for warning in config.warnings() {
        tracing::warn!(rule = %warning.rule, path = %warning.path, "{}", warning.message);
    }
    install_crypto_provider();
    match serve(config, reloads) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// One thread per CPU the process may use (cgroup quotas included). With a
/// single CPU, as in a sidecar limited to one core, a current-thread runtime:
/// a multi-thread runtime with one worker pays for cross-thread wake-ups and
/// work stealing it can never use (bench/run: about 12% more requests/s).
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let mut builder = if cpus == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(cpus);
        builder
    };
    builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn install_crypto_provider() {
    // One crypto backend for every rustls user in the process (two in one tree make rustls panic).
    if rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .is_err()
    {
        tracing::debug!("a rustls crypto provider was already installed");
    }
}

fn keygen(kubernetes: Option<&str>) -> ExitCode {
    match portcullis::keys::generate() {
        Ok(keys) => {
            match kubernetes {
                Some(name) => print!("{}", keys.kubernetes_secret(name)),
                None => print!("{}", keys.plain()),
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("cannot generate keys: {}", error_chain(&error));
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn demo(port: u16) -> ExitCode {
    install_crypto_provider();
    let result = runtime().and_then(|runtime| {
        runtime.block_on(async {
            portcullis::demo::run(port, shutdown_signal(), |addresses| {
                println!("portcullis demo: FOR DEVELOPMENT ONLY (a built-in test OpenID provider and a self-signed certificate)");
                println!();
                println!("  Open:        {}/", addresses.url);
                println!("  Sign in as:  {} / {}", portcullis::demo::DEMO_USER, portcullis::demo::DEMO_PASSWORD);
                println!("  Provider:    {} (development only)", addresses.idp);
                println!("  Application: http://{} (the echo page, no login of its own)", addresses.echo);
                if let Some(admin) = addresses.admin {
                    println!("  Metrics:     http://{admin}/metrics");
                }
                println!();
                println!("Your browser will warn about the self-signed certificate; accept it for localhost. Ctrl-C stops the demo.");
            })
            .await
            .map_err(anyhow::Error::from)
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn dev_idp(args: DevIdpArgs) -> ExitCode {
    use portcullis::dev_idp::{self, Options, Settings, SettingsError};

    let options = Options {
        config: args.config,
        address: args.address,
        issuer: args.issuer,
        endpoint_url: args.endpoint_url,
        cognito: args.cognito,
        user_pool_id: args.user_pool_id,
        clients: args.clients,
        users: args.users,
        allow_remote: args.allow_remote,
    };
    let settings = match Settings::load(&options) {
        Ok(settings) => settings,
        Err(SettingsError::Invalid { path, problems }) => {
            eprintln!("{path}: {} problem(s):", problems.len());
            for problem in problems {
                eprintln!("  - {problem}");
            }
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
        Err(error) => {
            eprintln!("{}", error_chain(&error));
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let result = runtime().and_then(|runtime| {
        runtime.block_on(async {
            let bound = dev_idp::bind(settings).await?;
            if !bound.address.ip().is_loopback() {
                tracing::warn!(
                    address = %bound.address,
                    "dev-idp listens beyond loopback (--allow-remote): anyone who reaches it can sign in as its test users"
                );
            }
            print!("{}", dev_idp::describe(bound.settings(), bound.address));
            println!("\nCtrl-C stops it.");
            bound.serve(shutdown_signal()).await;
            anyhow::Ok(())
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn import_alb(args: &ImportAlbArgs) -> ExitCode {
    let imported = match portcullis::import_alb::import_files(
        &args.rules,
        args.listener.as_deref(),
        &args.targets,
    ) {
        Ok(imported) => imported,
        Err(error) => {
            eprintln!("import-alb: {}", error_chain(&error));
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    print!("{}", imported.yaml);
    if !imported.notes.is_empty() {
        eprintln!(
            "import-alb: {} thing(s) not carried over or to do:",
            imported.notes.len()
        );
        for note in &imported.notes {
            eprintln!("  - {note}");
        }
    }
    if !imported.placeholders.is_empty() {
        eprintln!(
            "import-alb: set these environment variables before `portcullis check`: {}",
            imported.placeholders.join(", ")
        );
    }
    ExitCode::SUCCESS
}

fn healthcheck(url: &str) -> ExitCode {
    let probe = runtime().and_then(|runtime| runtime.block_on(probe(url)));
    match probe {
        Ok(200) => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("{url}: HTTP {status}");
            ExitCode::from(EXIT_RUNTIME)
        }
        Err(error) => {
            eprintln!("{url}: {error:#}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// One GET over plain HTTP/1.1, bounded to 3 s.
async fn probe(url: &str) -> anyhow::Result<u16> {
    let uri: http::Uri = url.parse().context("not a URL")?;
    let authority = uri.authority().context("the URL has no host")?.clone();
    let port = authority.port_u16().unwrap_or(80);
    let address = format!("{}:{port}", authority.host());
    let request = http::Request::get(uri.path_and_query().map_or("/", |path| path.as_str()))
        .header(http::header::HOST, authority.as_str())
        .body(http_body_util::Empty::<bytes::Bytes>::new())?;
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(&address).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let response = sender.send_request(request).await?;
        anyhow::Ok(response.status().as_u16())
    };
    tokio::time::timeout(std::time::Duration::from_secs(3), exchange)
        .await
        .context("no answer within 3 s")?
}

fn serve(config: config::Config, reloads: Reloads) -> anyhow::Result<()> {
    let runtime = runtime()?;
    runtime.block_on(async {
        // Before binding: from now on SIGHUP reloads instead of ending the process.
        forward_sighup(reloads.trigger());
        let portcullis = Portcullis::bind(&config).await?;
        tracing::info!(config = %config.fingerprint, watch_config = config.watch_config, "configuration loaded");
        portcullis.serve_reloading(shutdown_signal(), reloads).await;
        tracing::info!("stopped");
        Ok(())
    })
}

/// Each SIGHUP asks for a reload of the configuration file.
fn forward_sighup(reload: tokio::sync::mpsc::Sender<()>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(mut hangups) => {
                tokio::spawn(async move {
                    while hangups.recv().await.is_some() {
                        tracing::info!("SIGHUP received: reloading the configuration");
                        // Full: a reload is already asked for.
                        let _ = reload.try_send(());
                    }
                });
            }
            Err(error) => tracing::warn!(%error, "cannot listen for SIGHUP; reload by restarting"),
        }
    }
    #[cfg(not(unix))]
    drop(reload);
}

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = match signal(SignalKind::terminate()) {
            Ok(terminate) => terminate,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops portcullis");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
