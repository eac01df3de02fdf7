//! Notifications to people: JSON POSTs to webhook receivers (a Slack-compatible `text` field),
//! routed by incident category as the runbook's CONTACT MATRIX routes problems, retried with
//! backoff. Tokens come from files and are never logged.

use std::sync::Arc;
use std::time::Duration;

use dr_proto::domain::Category;
use hyper::{Method, Uri};

use crate::config::{NotifySettings, Receiver};
use crate::decide::Notification;
use crate::decide::settings::contact_for;

struct Target {
    name: String,
    uri: Uri,
    categories: Vec<Category>,
    min_step: u32,
    token: Option<String>,
}

pub struct Notifier {
    targets: Arc<Vec<Target>>,
    attempts: u32,
}

fn read_token(r: &Receiver) -> Result<Option<String>, String> {
    let Some(path) = &r.token_file else {
        return Ok(None);
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("receiver {}: token_file {}: {e}", r.name, path.display()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(format!(
                "receiver {}: token_file {} is readable by group or others; run: chmod 600 {}",
                r.name,
                path.display(),
                path.display()
            ));
        }
    }
    let t = std::fs::read_to_string(path)
        .map_err(|e| format!("receiver {}: token_file {}: {e}", r.name, path.display()))?;
    Ok(Some(t.trim().to_string()))
}

impl Notifier {
    pub fn load(settings: &NotifySettings) -> Result<Notifier, String> {
        let mut targets = Vec::new();
        for r in &settings.receivers {
            targets.push(Target {
                name: r.name.clone(),
                uri: r
                    .url
                    .parse()
                    .map_err(|e| format!("receiver {}: url: {e}", r.name))?,
                categories: r.categories.iter().filter_map(|c| c.parse().ok()).collect(),
                min_step: r.min_step,
                token: read_token(r)?,
            });
        }
        Ok(Notifier {
            targets: Arc::new(targets),
            attempts: settings.attempts.unwrap_or(5).max(1),
        })
    }

    /// Send `n` to every receiver whose route matches, in the background.
    pub fn send(&self, n: Notification) {
        let body = serde_json::json!({
            "text": n.text,
            "incident_id": n.incident_id,
            "group": n.group,
            "host": n.host,
            "category": n.category.map(|c| c.as_str()),
            "escalation_step": n.escalation_step,
            "contact": n.category.map(contact_for),
        })
        .to_string();
        for (i, t) in self.targets.iter().enumerate() {
            let category_ok =
                t.categories.is_empty() || n.category.is_some_and(|c| t.categories.contains(&c));
            let step_ok = n.escalation_step.unwrap_or(0) >= t.min_step;
            if !category_ok || !step_ok {
                continue;
            }
            let targets = self.targets.clone();
            let body = body.clone();
            let attempts = self.attempts;
            tokio::spawn(async move {
                let t = &targets[i];
                let auth = t.token.as_ref().map(|tok| format!("Bearer {tok}"));
                let mut headers = vec![("content-type", "application/json")];
                if let Some(a) = &auth {
                    headers.push(("authorization", a.as_str()));
                }
                for attempt in 1..=attempts {
                    let r = dr_proto::http_client::request(
                        Method::POST,
                        &t.uri,
                        &headers,
                        body.clone().into(),
                        Duration::from_secs(5),
                    )
                    .await;
                    match r {
                        Ok(a) if a.status.is_success() => {
                            tracing::info!(receiver = %t.name, attempt, "notification delivered");
                            return;
                        }
                        Ok(a) => {
                            tracing::warn!(receiver = %t.name, attempt, status = a.status.as_u16(), "notification refused")
                        }
                        Err(e) => {
                            tracing::warn!(receiver = %t.name, attempt, error = %e, "notification not delivered")
                        }
                    }
                    if attempt < attempts {
                        tokio::time::sleep(Duration::from_millis(250 * 2u64.pow(attempt - 1)))
                            .await;
                    }
                }
                tracing::error!(receiver = %t.name, attempts, "notification dropped after all attempts");
            });
        }
    }
}
