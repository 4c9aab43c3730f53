//! A full disk through the HTTP API: writes are refused with 507 and a ProblemDetails
//! body while the log has no space, the metric says so, and writes resume by
//! themselves when space returns (the write that found the disk full is then
//! acknowledged, not lost).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use citybrain_store::FaultPoint;

use super::harness::{app_on_store, vehicle};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_507_and_writes_resume() {
    let full = Arc::new(AtomicU8::new(0));
    let f = full.clone();
    let app = Arc::new(
        app_on_store(
            Default::default(),
            |_| {},
            move |o| {
                o.faults = Some(Arc::new(move |at| {
                    if f.load(Ordering::Acquire) == 1 && at == FaultPoint::LogSync {
                        Err(std::io::Error::from(std::io::ErrorKind::StorageFull))
                    } else {
                        Ok(())
                    }
                }))
            },
        )
        .await,
    );
    let r = app
        .post(
            "/ngsi-ld/v1/entities",
            &vehicle("urn:ngsi-ld:Vehicle:1", 1.0, 13.4, 52.5),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    full.store(1, Ordering::Release);
    let first = {
        let app = app.clone();
        tokio::spawn(async move {
            app.post(
                "/ngsi-ld/v1/entities",
                &vehicle("urn:ngsi-ld:Vehicle:2", 1.0, 13.4, 52.5),
            )
            .await
        })
    };
    let mut metrics = String::new();
    for _ in 0..200 {
        metrics = app.get("/metrics").await.text;
        if metric(&metrics, "citybrain_store_disk_full") == Some(1.0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        metric(&metrics, "citybrain_store_disk_full") == Some(1.0),
        "{metrics}"
    );
    let r = app
        .post(
            "/ngsi-ld/v1/entities",
            &vehicle("urn:ngsi-ld:Vehicle:3", 1.0, 13.4, 52.5),
        )
        .await;
    assert_eq!(r.status, 507, "{}", r.text);
    assert_eq!(
        r.body["type"],
        "https://citybrain.example/errors/InsufficientStorage"
    );
    assert!(
        r.body["detail"].as_str().unwrap().contains("disk is full"),
        "{}",
        r.text
    );
    // Reads go on.
    assert_eq!(
        app.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:1")
            .await
            .status,
        200
    );
    assert!(!first.is_finished(), "acknowledged while the disk was full");
    full.store(0, Ordering::Release);
    let r = first.await.unwrap();
    assert_eq!(r.status, 201, "{}", r.text);
    let r = app
        .post(
            "/ngsi-ld/v1/entities",
            &vehicle("urn:ngsi-ld:Vehicle:3", 1.0, 13.4, 52.5),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let metrics = app.get("/metrics").await.text;
    assert!(
        metric(&metrics, "citybrain_store_disk_full") == Some(0.0),
        "{metrics}"
    );
    assert!(
        metric(&metrics, "citybrain_store_disk_full_events_total") == Some(1.0),
        "{metrics}"
    );
}

/// The value of an unlabelled metric in Prometheus text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}
