//! Outages: a gateway that goes down refuses charges and lookups, and comes
//! back with its ledger whole.

use reqwest::StatusCode;
use tokio::net::TcpListener;

use crate::app::{TestApp, quiet_config};

#[tokio::test]
async fn down_refuses_charges_and_lookups_and_up_keeps_the_ledger() {
    let app = TestApp::start(quiet_config()).await;
    assert_eq!(app.charge("before", 1000).await.status, StatusCode::CREATED);

    assert_eq!(app.admin("down").await.body["down"], true);
    let refused = app.charge("during", 1000).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.body["error"], "unavailable");
    assert_eq!(refused.retry_after.as_deref(), Some("1"));
    assert_eq!(
        app.lookup("before").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // The instrumentation answers during an outage.
    let ledger = app.ledger().await;
    assert_eq!(ledger["charges"].as_array().map(Vec::len), Some(1));
    assert_eq!(app.stats().await["down"], true);

    assert_eq!(app.admin("up").await.body["down"], false);
    assert_eq!(app.lookup("before").await.status, StatusCode::OK);
    assert_eq!(
        app.lookup("during").await.status,
        StatusCode::NOT_FOUND,
        "a refused charge was never made"
    );
    assert_eq!(app.charge("during", 1000).await.status, StatusCode::CREATED);

    // The same, in-process.
    app.handle.set_down(true);
    assert_eq!(
        app.charge("while-down", 1000).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    app.handle.set_down(false);
    assert_eq!(
        app.charge("while-down", 1000).await.status,
        StatusCode::CREATED
    );

    let stats = app.handle.stats();
    assert_eq!(
        (stats.captured, stats.refused_down, stats.down),
        (3, 3, false)
    );
    assert_eq!(app.handle.ledger().len(), 3);
}

#[tokio::test]
async fn serve_runs_until_its_shutdown_future_resolves() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(voucherd_gateway_sim::serve(
        listener,
        quiet_config(),
        async {
            let _ = stopped.await;
        },
    ));

    let response = reqwest::get(format!("{url}/ledger"))
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::OK);
    let unknown = reqwest::get(format!("{url}/nowhere"))
        .await
        .expect("an answer");
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    stop.send(()).expect("the server is listening");
    server
        .await
        .expect("the server task")
        .expect("a clean shutdown");
}

#[tokio::test]
async fn serve_refuses_an_invalid_configuration() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let config = voucherd_gateway_sim::SimulatorConfig {
        decline_rate: 1.5,
        ..quiet_config()
    };
    let outcome = voucherd_gateway_sim::serve(listener, config, std::future::pending()).await;
    let error = outcome.expect_err("a decline rate over 1 is refused");
    assert!(
        matches!(error, voucherd_gateway_sim::SimulatorError::Config(_)),
        "{error:?}"
    );
}
