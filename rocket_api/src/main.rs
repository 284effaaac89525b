//! `ferrocluster-api`: serves the REST API (`ferrocluster-api`), or prints its OpenAPI
//! document (`ferrocluster-api openapi`).

use tracing_subscriber::EnvFilter;

#[rocket::main]
async fn main() {
    if std::env::args().nth(1).as_deref() == Some("openapi") {
        print!("{}", ferrocluster_api::api::docs::openapi_text());
        return;
    }
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let rocket = match ferrocluster_api::build(rocket::Config::figment()) {
        Ok(rocket) => rocket,
        Err(e) => {
            eprintln!("ferrocluster-api: {e}");
            std::process::exit(2);
        }
    };
    // Rocket drains in-flight requests on SIGINT/SIGTERM (its `shutdown` settings); job
    // records are on disk, so training interrupted here resumes at the next start.
    if let Err(e) = rocket.launch().await {
        eprintln!("ferrocluster-api: {e}");
        std::process::exit(1);
    }
}
