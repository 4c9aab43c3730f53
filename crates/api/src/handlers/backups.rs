//! `POST /platform/v1/backups`: an online backup of the store, named by the caller,
//! under `storage.backup_dir` (administrators only).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use crate::context::Ctx;
use crate::problem::ApiResult;
use crate::request::parse_object;
use crate::response::plain_json;
use crate::AppState;

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BackupBody {
    #[serde(default)]
    name: Option<String>,
}

pub async fn take(State(app): State<AppState>, Ctx(rc): Ctx, body: Bytes) -> ApiResult<Response> {
    let b: BackupBody = if body.iter().all(u8::is_ascii_whitespace) {
        BackupBody::default()
    } else {
        parse_object(&body)?
    };
    let (name, path, report) = app.broker.backup(&rc, b.name.as_deref()).await?;
    let mut out = json!(report);
    out["name"] = json!(name);
    out["path"] = json!(path.display().to_string());
    Ok(plain_json(StatusCode::CREATED, &out))
}
