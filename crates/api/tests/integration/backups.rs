//! `POST /platform/v1/backups`: an online backup under the configured directory, named
//! by the caller; refused names, repeated names, and callers who may not.

use serde_json::json;

use super::harness::{app_configured, app_governed, vehicle};

#[tokio::test]
async fn backups_are_taken_by_name_under_the_backup_directory() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().to_path_buf();
    let app = app_configured(Default::default(), |c| c.backup_dir = Some(dir)).await;
    let r = app
        .post(
            "/ngsi-ld/v1/entities",
            &vehicle("urn:ngsi-ld:Vehicle:1", 3.0, 13.4, 52.5),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = app
        .post("/platform/v1/backups", &json!({"name": "nightly"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["name"], "nightly");
    assert!(r.body["lsn"].as_u64().unwrap() >= 1, "{}", r.text);
    assert!(root.path().join("nightly").join("BACKUP.json").exists());
    // The same name again: a conflict, the first backup untouched.
    let r = app
        .post("/platform/v1/backups", &json!({"name": "nightly"}))
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    // Unnamed backups, several within one second (two of them at once): each gets a
    // name of its own.
    let (a, b) = tokio::join!(
        app.call("POST", "/platform/v1/backups", &[], None),
        app.call("POST", "/platform/v1/backups", &[], None)
    );
    let c = app.call("POST", "/platform/v1/backups", &[], None).await;
    let mut names = std::collections::BTreeSet::new();
    for r in [a, b, c] {
        assert_eq!(r.status, 201, "{}", r.text);
        names.insert(r.body["name"].as_str().unwrap().to_string());
    }
    assert_eq!(names.len(), 3, "{names:?}");
    // A name is not a path.
    for bad in ["../x", "a/b", ".hidden", ""] {
        let r = app
            .post("/platform/v1/backups", &json!({"name": bad}))
            .await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
        assert!(r.text.contains("name"), "{}", r.text);
    }
    let r = app
        .post("/platform/v1/backups", &json!({"to": "/etc"}))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    // Without a name: backup-<time>.
    let r = app.post("/platform/v1/backups", &json!({})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(r.body["name"].as_str().unwrap().starts_with("backup-"));
}

#[tokio::test]
async fn without_a_backup_directory_or_as_a_viewer_there_is_no_backup() {
    let app = super::harness::app().await;
    let r = app.post("/platform/v1/backups", &json!({})).await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.text.contains("storage.backup_dir"), "{}", r.text);
    let g = app_governed(json!({"types": {}})).await;
    let viewer = g.key("vic", &["viewer"], |_| {});
    let r = g
        .call(
            Some(&viewer),
            "POST",
            "/platform/v1/backups",
            &[],
            Some(&json!({})),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
}
