//! NGSI-LD subscriptions and HTTP notifications.

mod dispatch;
mod live;
mod manager;
mod model;
mod notify;

pub use dispatch::{DispatchSettings, DispatchStats, MqttTransport};
pub use live::{LiveItem, LiveStats, LiveSubscription, LIVE_MAX, LIVE_PER_PRINCIPAL, LIVE_QUEUE};
pub use manager::{link_header, SubEntry, SubscriptionManager};
pub use model::{Compiled, Endpoint, Selector, Status, Triggers};
